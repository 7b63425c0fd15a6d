"""bench.quality.statistics against closed forms and seeded simulations (tolerances explained inline)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from bench.errors import UsageError
from bench.quality.statistics import (
    BETTER,
    NOT_RESOLVED,
    WORSE,
    across_seeds,
    difference,
    fd_from_features,
    fd_infinity,
    frechet_distance,
    kid,
    mmd2_unbiased,
    real_floor,
)


def _rotation(d: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q


# ------------------------------------------------------------------------------------------ FD


def test_fd_matches_the_closed_form_for_gaussians_sharing_an_eigenbasis():
    # Same eigenbasis: FD = |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2 exactly; 1e-9 is rounding
    # of two eigen-decompositions of 8x8 matrices with O(1) entries.
    d = 8
    a, b = np.linspace(0.5, 3.0, d), np.linspace(2.0, 0.2, d)
    mu1, mu2 = np.arange(d) / 10.0, -np.ones(d) / 4.0
    rotation = _rotation(d, 0)
    closed = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(closed, abs=1e-9)
    rotated = frechet_distance(mu1, rotation @ np.diag(a) @ rotation.T,
                               mu2, rotation @ np.diag(b) @ rotation.T)
    assert rotated == pytest.approx(closed, abs=1e-9)
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2.
    assert frechet_distance([1.0], [[4.0]], [-1.0], [[9.0]]) == pytest.approx(4.0 + 1.0, abs=1e-12)
    assert frechet_distance(mu1, np.diag(a), mu1, np.diag(a)) == pytest.approx(0.0, abs=1e-9)


def test_fd_matches_scipy_sqrtm_for_non_commuting_covariances():
    from scipy import linalg

    d = 6
    rng = np.random.default_rng(1)
    m1, m2 = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    cov1, cov2 = m1 @ m1.T + 0.1 * np.eye(d), m2 @ m2.T + 0.1 * np.eye(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    reference = (np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2)
                 - 2 * np.trace(linalg.sqrtm(cov1 @ cov2)).real)
    assert frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(reference, rel=1e-8)


def _whitened(n: int, d: int, seed: int) -> np.ndarray:
    """n samples whose sample mean is exactly 0 and sample covariance (ddof=1) exactly I."""
    z = np.random.default_rng(seed).standard_normal((n, d))
    z -= z.mean(axis=0)
    return z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T


def test_fd_from_features_equals_the_closed_form_of_the_sample_moments_and_takes_tensors():
    # Samples built to have exactly the moments (0, I) and (0.3, diag(scale^2)): no sampling noise
    # is left, so the closed form must hold to rounding (1e-9 on a value of 1.86).
    scale = np.array([1.0, 0.5, 2.0, 1.5])
    x = _whitened(500, 4, seed=2)
    y = 0.3 + scale * _whitened(300, 4, seed=3)
    truth = 4 * 0.3 ** 2 + np.sum((scale - 1) ** 2)
    assert fd_from_features(x, y) == pytest.approx(truth, abs=1e-9)
    as_tensors = fd_from_features(torch.from_numpy(x), torch.from_numpy(y))
    assert as_tensors == pytest.approx(truth, abs=1e-9)
    with pytest.raises(UsageError, match="widths differ"):
        fd_from_features(x, y[:, :3])


# ---------------------------------------------------------------------------------- FD infinity


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fd_infinity_recovers_the_true_fd_where_fixed_n_is_biased(seed):
    # 32-d features, true FD 1.342. FD of n generated images is biased up by ~b/n: ~0.7 at n=400 and
    # ~0.1-0.15 at n=2,000 here. Over 30 seeds the extrapolation's error averaged 0.04 (max 0.17);
    # 0.1 (7 % of the truth) holds for these fixed seeds, and the extrapolation must also beat the
    # FD at both the smallest and the largest n of its own fit (it did on 30 of 30 seeds).
    d = 32
    scale, shift = np.linspace(0.7, 1.3, d), np.full(d, 0.1)
    truth = float(np.sum(shift ** 2) + np.sum((scale - 1) ** 2))
    rng = np.random.default_rng(seed)
    real = rng.standard_normal((20_000, d))
    generated = shift + scale * rng.standard_normal((2_000, d))
    result = fd_infinity(generated, real, seed=seed)
    assert result.sizes[0] == 400 and result.sizes[-1] == 2_000 and len(result.fds) == len(result.sizes)
    assert abs(result.value - truth) < 0.1
    assert abs(result.value - truth) < abs(result.fds[0] - truth)
    assert abs(result.value - truth) < abs(result.fds[-1] - truth)
    assert result.slope > 0  # the bias shrinks with n
    again = fd_infinity(generated, real, seed=seed)
    assert again == result


def test_fd_infinity_refuses_unusable_sizes():
    features = np.random.default_rng(0).standard_normal((50, 3))
    with pytest.raises(UsageError, match="at least 2 different"):
        fd_infinity(features, features, sizes=[20, 20])
    with pytest.raises(UsageError, match="outside 2..50"):
        fd_infinity(features, features, sizes=[10, 60])


# ------------------------------------------------------------------------------------------ KID


def test_mmd2_unbiased_matches_a_pairwise_loop():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((5, 3)), rng.standard_normal((4, 3)) + 0.5

    def k(a, b):
        return (float(a @ b) / 3 + 1) ** 3

    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(5), 2)) / 20
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(4), 2)) / 12
    xy = sum(k(a, b) for a in x for b in y) / 20
    assert mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_a_shift():
    # Same distribution: the unbiased estimate centres on 0; its std per subset is ~0.008 here, so
    # |mean| < 0.01 over 50 subsets is loose. A 0.3 shift in all 16 dimensions gives ~0.3.
    rng = np.random.default_rng(4)
    gen, real = rng.standard_normal((1_000, 16)), rng.standard_normal((1_000, 16))
    same = kid(gen, real, subset_size=200, subsets=50, seed=0)
    shifted = kid(gen + 0.3, real, subset_size=200, subsets=50, seed=0)
    assert abs(same.mean) < 0.01 and same.std > 0
    assert shifted.mean > 0.1 and shifted.mean > 10 * shifted.std / np.sqrt(50)
    assert (same.subset_size, same.subsets) == (200, 50)
    assert kid(gen, real, subset_size=200, subsets=50, seed=0) == same


def test_kid_refuses_subsets_that_are_not_a_sampling_spread():
    features = np.random.default_rng(5).standard_normal((100, 4))
    for size, message in ((100, "below the 100 generated"), (150, "below the 100 generated")):
        with pytest.raises(UsageError, match=message) as excinfo:
            kid(features, features, subset_size=size, subsets=10)
        assert "\n" not in str(excinfo.value)
    with pytest.raises(UsageError, match="exceeds the 50 real"):
        kid(features, features[:50], subset_size=60, subsets=10)
    with pytest.raises(UsageError, match="subsets must be"):
        kid(features, features, subset_size=50, subsets=1)


# ----------------------------------------------------------------------------------- real floor


def test_real_floor_is_small_shrinks_with_n_and_checks_sizes():
    rng = np.random.default_rng(6)
    real = rng.standard_normal((4_000, 8))
    small, large = real_floor(real, 200, seed=0), real_floor(real, 2_000, seed=0)
    assert 0 < large < small  # finite-sample FD of one distribution: positive, falling with n
    heldout = rng.standard_normal((1_000, 8))
    against_reference = real_floor(heldout, 1_000, seed=0, reference=real)
    assert 0 < against_reference < small
    with pytest.raises(UsageError, match="need 8002 real"):
        real_floor(real, 4_001)
    with pytest.raises(UsageError, match="exceeds the 1000"):
        real_floor(heldout, 1_001, reference=real)


# ---------------------------------------------------------------------------------------- seeds


def test_across_seeds_interval_by_hand_and_coverage_in_simulation():
    # [1, 2, 3]: mean 2, std 1, t(0.975, 2 dof) = 4.302652729911275 (table value).
    summary = across_seeds([1.0, 2.0, 3.0])
    half = 4.302652729911275 / np.sqrt(3)
    assert (summary.mean, summary.std, summary.n) == (2.0, 1.0, 3)
    assert summary.low == pytest.approx(2 - half) and summary.high == pytest.approx(2 + half)
    # 95 % intervals from 3 seeds cover the true mean ~95 times in 100; >= 90 fails a z interval
    # (1.96 instead of t's 4.30 covers only ~81 % with 2 dof; 85 of 100 on this seed) and any
    # interval much too narrow.
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(100):
        s = across_seeds(rng.normal(5.0, 1.0, size=3))
        hits += s.low <= 5.0 <= s.high
    assert hits >= 90
    with pytest.raises(UsageError, match="at least 2 values"):
        across_seeds([1.0])
    with pytest.raises(UsageError, match="between 0 and 1"):
        across_seeds([1.0, 2.0], confidence=95)


def test_difference_verdicts():
    clearly = difference([1.0, 1.1, 0.9], [2.0, 2.1, 1.9])
    assert clearly.verdict == BETTER and clearly.high < 0 and clearly.delta == pytest.approx(-1.0)
    assert difference([2.0, 2.1, 1.9], [1.0, 1.1, 0.9]).verdict == WORSE
    overlapping = difference([1.0, 2.0, 3.0], [1.5, 2.5, 1.0])
    assert overlapping.verdict == NOT_RESOLVED and overlapping.low < 0 < overlapping.high
    # Higher is better (e.g. accuracy): the same numbers flip the word.
    assert difference([1.0, 1.1, 0.9], [2.0, 2.1, 1.9], lower_is_better=False).verdict == WORSE
    # Welch: unequal spreads and sizes give fewer degrees of freedom than pooled n_a + n_b - 2.
    welch = difference([1.0, 1.0, 1.01], [0.0, 2.0, 4.0, 1.0])
    assert welch.dof < 5 and welch.verdict == NOT_RESOLVED
    constant = difference([1.0, 1.0], [2.0, 2.0])
    assert constant.verdict == BETTER and constant.low == constant.high == -1.0
