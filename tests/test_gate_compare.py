"""The gate's pure parts: verdicts, confirmation of latency failures, update diffs, paired ratios,
tables and the --override parser. No torch work here, so these run in milliseconds."""

from __future__ import annotations

import platform

import pytest

from bench.commands.check import parse_overrides
from bench.commands.values import parse_cli_value as parse_value
from bench.errors import UsageError
from bench.gate import compare as cmp
from bench.gate.table import findings_table, format_change, format_value, render
from bench.measure.allocator import steady_allocator
from bench.measure.interleaved import paired_ratios, round_orders


@pytest.mark.parametrize("now, verdict", [(100, "ok"), (101, "regressed"), (99, "changed"),
                                          (None, "missing")])
def test_counts_must_match_exactly_in_both_directions(now, verdict):
    finding = cmp.compare_count("cunet", "params", 100, now)
    assert finding.verdict == verdict
    assert finding.failed == (verdict != "ok")


def test_checkpoint_mib_may_move_by_a_tenth_of_a_percent():
    assert cmp.compare_count("unet", "checkpoint_mib", 545.0, 545.5).verdict == "ok"
    assert cmp.compare_count("unet", "checkpoint_mib", 545.0, 545.6).verdict == "regressed"
    assert cmp.compare_count("unet", "checkpoint_mib", 545.0, 544.4).verdict == "changed"


def test_a_params_count_off_by_one_fails():
    finding = cmp.compare_count("cunet", "params", 8_811_875, 8_811_876)
    assert finding.verdict == "regressed"
    assert finding.change_pct == pytest.approx(100 / 8_811_875)


@pytest.mark.parametrize("now, verdict", [(0.659, "ok"), (0.541, "ok"), (0.67, "regressed"),
                                          (0.53, "changed"), (None, "missing")])
def test_latency_ratio_within_tolerance_either_way(now, verdict):
    assert cmp.compare_ratio("cunet", 0.6, now, 0.1).verdict == verdict


def test_compare_follows_the_baseline_and_ignores_what_it_does_not_gate():
    baseline = {("unet", "params"): 10.0, ("unet", "latency_ms"): 50.0,
                ("cunet", "nfe"): 36.0, ("cunet", "latency_ratio"): 0.5,
                ("cunet", "macs_thop"): 7.0}
    now = {("unet", "params"): 10.0, ("cunet", "nfe"): 72.0, ("cunet", "latency_ratio"): 0.52,
           ("cunet", "flops_torch"): 1.0}
    findings = cmp.compare(baseline, now, tolerance=0.1,
                           errors={("cunet", "macs_thop"): "RuntimeError: boom"})
    assert [(f.model, f.metric, f.verdict) for f in findings] == [
        ("unet", "params", "ok"), ("cunet", "nfe", "regressed"), ("cunet", "latency_ratio", "ok"),
        ("cunet", "macs_thop", "failed"),
    ]
    assert findings[-1].note == "RuntimeError: boom"


def test_a_latency_failure_must_be_confirmed_by_a_second_run():
    first = cmp.compare_ratio("cunet", 0.6, 0.8, 0.1)
    noise = cmp.confirm(first, cmp.compare_ratio("cunet", 0.6, 0.62, 0.1))
    assert noise.verdict == "ok" and "first run +33.3 %" in noise.note
    real = cmp.confirm(first, cmp.compare_ratio("cunet", 0.6, 0.75, 0.1))
    assert real.verdict == "regressed" and real.now == 0.75  # the smaller deviation is reported
    assert cmp.confirm(cmp.compare_ratio("cunet", 0.6, 0.6, 0.1), first).verdict == "ok"


def test_reference_hint_when_every_ratio_fell():
    fell = [cmp.compare_ratio(m, 0.6, 0.4, 0.1) for m in ("cunet", "cunet-nores")]
    assert "unet" in cmp.reference_hint(fell + [cmp.compare_ratio("unet", 1, 1, 0.1)], "unet")
    mixed = fell + [cmp.compare_ratio("cunet-attn5", 0.6, 0.6, 0.1)]
    assert cmp.reference_hint(mixed, "unet") is None


def test_update_diff_lists_added_removed_and_changed_gated_values():
    old = {("unet", "params"): 10.0, ("cunet", "params"): 5.0, ("unet", "latency_ms"): 3.0}
    new = {("unet", "params"): 11.0, ("cunet-nores", "params"): 4.0, ("unet", "latency_ms"): 4.0}
    changes = cmp.baseline_changes(old, new)
    assert [(c.model, c.kind) for c in changes] == [
        ("unet", "changed"), ("cunet-nores", "added"), ("cunet", "removed")]
    assert changes[0].change_pct == pytest.approx(10.0)
    assert cmp.baseline_changes(new, new) == []


def test_round_orders_rotate_so_no_model_always_goes_first():
    orders = round_orders(["a", "b", "c"], 4)
    assert orders == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]


def test_paired_ratios_cancel_load_that_hits_a_whole_round():
    rounds = [{"ref": 10.0, "m": 5.0}, {"ref": 40.0, "m": 20.0}, {"ref": 10.0, "m": 50.0}]
    assert paired_ratios(rounds, "ref") == {"ref": 1.0, "m": 0.5}
    with pytest.raises(UsageError):
        paired_ratios([], "ref")


def test_regression_table_names_model_metric_and_change():
    findings = [cmp.compare_count("cunet", "params", 8_811_875, 8_811_876),
                cmp.compare_count("unet", "nfe", 36, 36),
                cmp.compare_count("cunet-nores", "nfe", 36, 18)]
    table = findings_table(findings)
    lines = table.splitlines()
    assert len(lines) == 4  # header, rule, two failures; the passing row is left out
    assert "cunet" in lines[2] and "params" in lines[2] and "8,811,876" in lines[2]
    assert "+1.1e-05 %" in lines[2] and "regressed" in lines[2]
    assert "-50.0 %" in lines[3] and "changed" in lines[3]


def test_table_formatting():
    assert format_value("params", 35710339.0) == "35,710,339"
    assert format_value("checkpoint_mib", 545.3527) == "545.35"
    assert format_value("latency_ratio", 0.58695) == "0.587"
    assert format_value("nfe", None) == "-"
    assert format_change(None) == "-" and format_change(0.0) == "0.0 %"
    assert format_change(0.05) == "+0.05 %" and format_change(-12.34) == "-12.3 %"
    assert render(["a", "n"], [], [False, True]).splitlines()[1] == "|---|--:|"


def test_override_values_and_format():
    assert parse_value("17") == 17 and parse_value("0.5") == 0.5
    assert parse_value("True") is True and parse_value("euler") == "euler"
    assert parse_overrides(["cunet:num_filters=17", "cunet:solver=euler", "unet:width=32"]) == {
        "cunet": {"num_filters": 17, "solver": "euler"}, "unet": {"width": 32}}
    for bad in ("cunet", "cunet:num_filters", "num_filters=17", "cunet:=3", "cunet:x="):
        with pytest.raises(UsageError, match="MODEL:KEY=VALUE"):
            parse_overrides([bad])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_allocator_is_pinned_on_glibc():
    assert steady_allocator() is True
