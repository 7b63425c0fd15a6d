"""Statistics on feature matrices and per-seed scores: FD, FD-infinity, KID, a real-data floor,
seed confidence intervals and a verdict on the difference of two denoisers. Pure functions, no I/O.

Features are (N, D) arrays (numpy or torch, any float dtype); everything is computed in float64
numpy. Random subsets are always drawn *without* replacement from `numpy.random.default_rng(seed)`,
so the same seed gives the same numbers.

Square root of the covariance product: `frechet_distance` does not call `scipy.linalg.sqrtm` on
the non-symmetric C1 @ C2 (what most FID code does) but uses two symmetric eigen-decompositions:
tr sqrt(C1 C2) = tr sqrt(S C2 S) with S = C1^(1/2), and S C2 S is symmetric positive semi-definite,
so its eigenvalues are real and non-negative up to rounding (clipped at 0). This never returns a
complex residue, needs no "add eps to the diagonal" retry when a covariance is singular (N <= D,
common for small subsets), and is deterministic and faster for the 64-2048 dimensions used here.

Lower is better for FD, FD-infinity and KID; `difference` assumes so unless told otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench.errors import UsageError

BETTER, WORSE, NOT_RESOLVED = "better", "worse", "not resolved"


def _matrix(features: object, what: str) -> np.ndarray:
    """(N, D) float64 numpy copy of a numpy array or torch tensor; UsageError otherwise."""
    if hasattr(features, "detach"):
        features = features.detach().cpu().numpy()
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] < 2 or array.shape[1] < 1:
        raise UsageError(f"{what}: expected an (N, D) feature matrix with N >= 2, got shape "
                         f"{tuple(array.shape)}")
    if not np.all(np.isfinite(array)):
        raise UsageError(f"{what}: features contain NaN or infinity")
    return array


def _same_width(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[1] != b.shape[1]:
        raise UsageError(f"feature widths differ: {a.shape[1]} vs {b.shape[1]}; both sets must come "
                         "from the same extractor and layer")


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (eigenvalues < 0 -> 0)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Fréchet distance of N(mu1, cov1) and N(mu2, cov2):
    |mu1 - mu2|^2 + tr(cov1) + tr(cov2) - 2 tr sqrt(cov1 cov2) (see the module docstring)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, dtype=np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    cov1, cov2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or cov1.shape != (d, d) or cov2.shape != (d, d):
        raise UsageError(f"frechet_distance: shapes do not match: mu1 {mu1.shape}, cov1 {cov1.shape}, "
                         f"mu2 {mu2.shape}, cov2 {cov2.shape}")
    root = _sqrt_psd(cov1)
    middle = root @ cov2 @ root
    trace_sqrt = float(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum())
    value = float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_sqrt)
    return max(value, 0.0)  # only rounding can make it negative


def moments(features: object) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of (N, D) features."""
    array = _matrix(features, "moments")
    return array.mean(axis=0), np.cov(array, rowvar=False, ddof=1).reshape(array.shape[1], -1)


def fd_from_features(a: object, b: object) -> float:
    """Fréchet distance between the Gaussians fitted to feature sets `a` and `b` (each (N, D))."""
    a, b = _matrix(a, "fd_from_features a"), _matrix(b, "fd_from_features b")
    _same_width(a, b)
    return frechet_distance(*moments(a), *moments(b))


def _subset(rng: np.random.Generator, features: np.ndarray, size: int) -> np.ndarray:
    return features[rng.choice(features.shape[0], size=size, replace=False)]


@dataclass(frozen=True)
class FDInfinity:
    """FD extrapolated to an infinite generated set: the fit FD(n) = value + slope / n."""

    value: float
    slope: float
    sizes: tuple[int, ...]
    fds: tuple[float, ...]


def default_fd_sizes(n: int, points: int = 10) -> tuple[int, ...]:
    """`points` subset sizes evenly spaced from n // 5 to n (Chong & Forsyth space theirs evenly
    from 5,000 to 50,000, a 1:10 range; 1:5 keeps the smallest subset usable when n is ~1,000)."""
    low = max(2, n // 5)
    return tuple(sorted({int(round(s)) for s in np.linspace(low, n, points)}))


def fd_infinity(gen_features: object, real_features: object, sizes: Sequence[int] | None = None,
                seed: int = 0) -> FDInfinity:
    """Chong & Forsyth (2020), "Effectively Unbiased FID and Inception Score and where to find them".

    FD is biased upwards by roughly b / n for n generated images, with b depending on the
    generator, so FDs at one n can rank two generators wrongly. For each size n_i in `sizes`
    (default `default_fd_sizes`) a random subset of n_i generated features, drawn without
    replacement, is scored against *all* real features; the least-squares line through
    (1 / n_i, FD_i) is extrapolated to 1 / n = 0. Only the generated side is extrapolated: the
    real set's own finite-size bias stays in the value, the same for every generator scored
    against the same reference (see `real_floor` for its size).
    """
    gen, real = _matrix(gen_features, "fd_infinity generated"), _matrix(real_features, "fd_infinity real")
    _same_width(gen, real)
    n = gen.shape[0]
    chosen = tuple(int(s) for s in (default_fd_sizes(n) if sizes is None else sizes))
    if len(set(chosen)) < 2:
        raise UsageError(f"fd_infinity: need at least 2 different subset sizes, got {list(chosen)}")
    bad = [s for s in chosen if not 2 <= s <= n]
    if bad:
        raise UsageError(f"fd_infinity: subset sizes {bad} are outside 2..{n} (the generated images)")
    rng = np.random.default_rng(seed)
    real_moments = moments(real)
    fds = tuple(frechet_distance(*moments(_subset(rng, gen, s)), *real_moments) for s in chosen)
    design = np.column_stack([np.ones(len(chosen)), 1.0 / np.asarray(chosen, dtype=np.float64)])
    (intercept, slope), *_ = np.linalg.lstsq(design, np.asarray(fds), rcond=None)
    return FDInfinity(value=float(intercept), slope=float(slope), sizes=chosen, fds=fds)


@dataclass(frozen=True)
class KID:
    """Kernel Inception Distance: mean and spread (std, ddof=1) of unbiased MMD^2 over subsets."""

    mean: float
    std: float
    subset_size: int
    subsets: int


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 of samples x (m, D) and y (m', D) under k(a, b) = (a.b / D + 1)^3."""
    kxx, kyy, kxy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
    m, k = x.shape[0], y.shape[0]
    within_x = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (k * (k - 1))
    return float(within_x + within_y - 2.0 * kxy.mean())


def kid(gen_features: object, real_features: object, subset_size: int, subsets: int,
        seed: int = 0) -> KID:
    """KID (Binkowski et al. 2018) over `subsets` pairs of subsets of `subset_size` generated and
    `subset_size` real features, each drawn without replacement.

    subset_size must be below the number of generated features: with all of them in every subset
    the generated side never varies, and the std would not be a sampling spread.
    """
    gen, real = _matrix(gen_features, "kid generated"), _matrix(real_features, "kid real")
    _same_width(gen, real)
    if isinstance(subset_size, bool) or not isinstance(subset_size, int) or subset_size < 2:
        raise UsageError(f"kid: subset_size must be an integer >= 2, got {subset_size!r}")
    if subset_size >= gen.shape[0]:
        raise UsageError(f"kid: subset_size {subset_size} must be below the {gen.shape[0]} generated "
                         "features, or every subset is the same and the std is no sampling spread")
    if subset_size > real.shape[0]:
        raise UsageError(f"kid: subset_size {subset_size} exceeds the {real.shape[0]} real features")
    if isinstance(subsets, bool) or not isinstance(subsets, int) or subsets < 2:
        raise UsageError(f"kid: subsets must be an integer >= 2 (for a spread), got {subsets!r}")
    rng = np.random.default_rng(seed)
    values = np.array([mmd2_unbiased(_subset(rng, gen, subset_size), _subset(rng, real, subset_size))
                       for _ in range(subsets)])
    return KID(mean=float(values.mean()), std=float(values.std(ddof=1)), subset_size=subset_size,
               subsets=subsets)


def real_floor(real_features: object, n: int, seed: int = 0, reference: object | None = None) -> float:
    """The FD a perfect generator would score with n images: real against real.

    Without `reference`: FD between two disjoint random subsets of n real features each (needs
    2n real features). With `reference` (e.g. the training split that generated images are
    scored against): FD between n random real features (e.g. the held-out split) and all of it.
    """
    real = _matrix(real_features, "real_floor real")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise UsageError(f"real_floor: n must be an integer >= 2, got {n!r}")
    rng = np.random.default_rng(seed)
    if reference is None:
        if 2 * n > real.shape[0]:
            raise UsageError(f"real_floor: two disjoint subsets of {n} need {2 * n} real features, "
                             f"got {real.shape[0]}")
        order = rng.permutation(real.shape[0])
        return fd_from_features(real[order[:n]], real[order[n:2 * n]])
    ref = _matrix(reference, "real_floor reference")
    _same_width(real, ref)
    if n > real.shape[0]:
        raise UsageError(f"real_floor: n {n} exceeds the {real.shape[0]} real features")
    return fd_from_features(_subset(rng, real, n), ref)


def _values(values: Sequence[float], what: str) -> np.ndarray:
    array = np.asarray([float(v) for v in values], dtype=np.float64)
    if array.ndim != 1 or array.size < 2:
        raise UsageError(f"{what}: need at least 2 values (one per training seed), got {array.size}")
    if not np.all(np.isfinite(array)):
        raise UsageError(f"{what}: values contain NaN or infinity")
    return array


def _check_confidence(confidence: float) -> float:
    if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not 0 < confidence < 1:
        raise UsageError(f"confidence must be a number strictly between 0 and 1, got {confidence!r}")
    return float(confidence)


@dataclass(frozen=True)
class SeedSummary:
    """Mean over independent training seeds with a Student-t interval [low, high]."""

    mean: float
    std: float
    low: float
    high: float
    n: int
    confidence: float


def across_seeds(values: Sequence[float], confidence: float = 0.95) -> SeedSummary:
    """Mean and two-sided Student-t confidence interval of one score across >= 2 training seeds
    (the seeds are the independent replicates; subsets of one run's images are not)."""
    from scipy import stats

    array, confidence = _values(values, "across_seeds"), _check_confidence(confidence)
    mean, std = float(array.mean()), float(array.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, df=array.size - 1)) * std / math.sqrt(array.size)
    return SeedSummary(mean=mean, std=std, low=mean - half, high=mean + half, n=int(array.size),
                       confidence=confidence)


@dataclass(frozen=True)
class Difference:
    """mean(a) - mean(b) with a Welch interval, and what it says about a relative to b."""

    delta: float
    low: float
    high: float
    dof: float
    confidence: float
    verdict: str


def difference(a_values: Sequence[float], b_values: Sequence[float], confidence: float = 0.95,
               lower_is_better: bool = True) -> Difference:
    """Compare denoiser a with b from their per-seed scores (Welch's unequal-variance t interval).

    verdict: "better" / "worse" when the interval of mean(a) - mean(b) excludes zero (a lower is
    better unless `lower_is_better` is False), else "not resolved": the seeds cannot tell them apart.
    """
    from scipy import stats

    a, b = _values(a_values, "difference a"), _values(b_values, "difference b")
    confidence = _check_confidence(confidence)
    delta = float(a.mean() - b.mean())
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if se == 0.0:  # both constant: no spread to widen the interval
        dof, half = math.inf, 0.0
    else:
        dof = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
        half = float(stats.t.ppf((1 + confidence) / 2, df=dof)) * se
    low, high = delta - half, delta + half
    if low > 0 or high < 0:
        a_lower = high < 0
        verdict = BETTER if a_lower == lower_is_better else WORSE
    else:
        verdict = NOT_RESOLVED
    return Difference(delta=delta, low=low, high=high, dof=float(dof), confidence=confidence,
                      verdict=verdict)


@dataclass(frozen=True)
class SetScores:
    """What one generated set scores against the reference: FD at its n, FD-infinity, KID."""

    n: int
    fd: float
    fd_inf: FDInfinity
    kid: KID

    def values(self) -> dict[str, float]:
        """metric name -> value, in the names the sweep's rows use."""
        return {"fid": self.fd, "fid_inf": self.fd_inf.value, "kid_mean": self.kid.mean,
                "kid_std": self.kid.std}


def default_kid_subset_size(n: int) -> int:
    """Half the generated set (at most 1,000): every KID subset then differs, so its std is a
    sampling spread, and the subsets stay large enough for a usable MMD estimate."""
    return max(2, min(1000, n // 2))


def score_features(gen_features: object, real_features: object, *, kid_subset_size: int | None = None,
                   kid_subsets: int = 100, fd_sizes: Sequence[int] | None = None,
                   seed: int = 0) -> SetScores:
    """FD at n (all generated against all real features), FD-infinity and KID of one set."""
    gen = _matrix(gen_features, "generated features")
    real = _matrix(real_features, "real features")
    _same_width(gen, real)
    subset = default_kid_subset_size(gen.shape[0]) if kid_subset_size is None else kid_subset_size
    return SetScores(n=gen.shape[0], fd=fd_from_features(gen, real),
                     fd_inf=fd_infinity(gen, real, fd_sizes, seed=seed),
                     kid=kid(gen, real, subset, kid_subsets, seed=seed))
