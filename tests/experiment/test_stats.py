"""The experiment statistics against scipy on hand-made result tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from mts_lightning.experiment import stats


def table(variant_values: dict[str, list[float]], condition: str = "c") -> list[dict]:
    """Rows of results.csv: value i of each variant is fold i // 2, seed i % 2."""
    return [
        {
            "variant": v,
            "fold": i // 2,
            "seed": i % 2,
            "condition": condition,
            "UA": x,
            "WA": x,
            "macro_F1": x,
        }
        for v, values in variant_values.items()
        for i, x in enumerate(values)
    ]


def test_estimate_is_scipys_t_interval():
    values = [0.61, 0.7, 0.66, 0.58, 0.73]
    e = stats.estimate(values)
    low, high = sps.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=sps.sem(values))
    assert (e.n, e.mean, e.std) == (
        5,
        pytest.approx(np.mean(values)),
        pytest.approx(np.std(values, ddof=1)),
    )
    assert (e.ci_low, e.ci_high) == (pytest.approx(low), pytest.approx(high))


def test_single_run_gives_no_interval_and_says_so():
    e = stats.estimate([0.8])
    assert (e.n, e.mean, e.std, e.ci_low, e.ci_high) == (1, 0.8, None, None, None)
    rows = table({"conv": [0.8], "mts": [0.9]})
    summary, comparisons = stats.summarize(rows, ["conv", "mts"], ["c"])
    markdown = stats.summary_markdown("x", summary, comparisons, ["c"])
    assert "| c | conv | 1 | 0.800 | n/a | n/a (single run) |" in markdown
    (comparison,) = comparisons
    assert comparison.p_value is None and comparison.difference.ci_low is None
    assert comparison.note == "one pair: no test, no interval"
    assert comparison.difference.mean == pytest.approx(0.1)


def test_equal_runs_give_a_point_interval():
    e = stats.estimate([0.5, 0.5, 0.5])
    assert (e.std, e.ci_low, e.ci_high) == (0.0, 0.5, 0.5)


def test_paired_wilcoxon_with_ties_and_zeros_matches_scipy():
    a = [0.50, 0.60, 0.55, 0.70, 0.65, 0.40, 0.52, 0.58]
    b = [0.60, 0.70, 0.55, 0.65, 0.75, 0.50, 0.52, 0.78]  # ties in |b - a|, two zeros
    rows = table({"conv": a, "mts": b})
    c = stats.paired(rows, "c", "UA", "conv", "mts")
    d = np.round(np.array(b) - np.array(a), 9)  # exact ties, as the table's values are
    expected = sps.wilcoxon(d, zero_method="pratt")
    assert c.wilcoxon_statistic == pytest.approx(expected.statistic)
    assert c.p_value == pytest.approx(expected.pvalue)
    # The same test written on the two samples.
    assert c.p_value == pytest.approx(sps.wilcoxon(b, a, zero_method="pratt").pvalue)
    assert c.zeros == 2 and "2 zero difference(s)" in c.note
    assert c.effect_size == pytest.approx(d.mean() / d.std(ddof=1))
    low, high = sps.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=sps.sem(d))
    assert (c.difference.ci_low, c.difference.ci_high) == (pytest.approx(low), pytest.approx(high))


def test_pairs_follow_fold_and_seed_not_row_order():
    rows = table({"conv": [0.1, 0.2, 0.3, 0.4], "mts": [0.3, 0.1, 0.6, 0.9]})
    rows.append(
        {
            "variant": "mts",
            "fold": 9,
            "seed": 9,
            "condition": "c",
            "UA": 0.0,
            "WA": 0.0,
            "macro_F1": 0.0,
        }
    )
    c = stats.paired(list(reversed(rows)), "c", "UA", "conv", "mts")
    d = np.array([0.2, -0.1, 0.3, 0.5])  # the unmatched run (fold 9) is left out
    assert c.difference.n == 4 and c.difference.mean == pytest.approx(d.mean())
    assert c.p_value == pytest.approx(sps.wilcoxon(d, zero_method="pratt").pvalue)


def test_all_zero_differences_give_no_test():
    rows = table({"conv": [0.5, 0.6, 0.7], "mts": [0.5, 0.6, 0.7]})
    c = stats.paired(rows, "c", "UA", "conv", "mts")
    assert c.p_value is None and c.note == "all differences are zero: no test"
    assert (c.difference.mean, c.difference.ci_low, c.difference.ci_high) == (0.0, 0.0, 0.0)


def test_equal_nonzero_differences_leave_the_effect_size_undefined():
    rows = table({"conv": [0.5, 0.6, 0.7], "mts": [0.6, 0.7, 0.8]})
    c = stats.paired(rows, "c", "UA", "conv", "mts")
    assert c.effect_size is None and "effect size undefined" in c.note
    assert c.p_value == pytest.approx(sps.wilcoxon([0.1, 0.1, 0.1], zero_method="pratt").pvalue)


def test_summary_rows_per_variant_condition_and_metric():
    rows = table({"conv": [0.5, 0.6], "mts": [0.7, 0.9], "base": [0.2, 0.3]}) + table(
        {"conv": [0.4, 0.5], "mts": [0.6, 0.6], "base": [0.1, 0.1]}, condition="fast"
    )
    summary, comparisons = stats.summarize(rows, ["conv", "mts", "base"], ["c", "fast"])
    assert len(summary) == 3 * 2 * 3
    row = next(
        r for r in summary if (r["variant"], r["condition"], r["metric"]) == ("mts", "fast", "UA")
    )
    assert (row["runs"], row["mean"], row["std"]) == (2, pytest.approx(0.6), 0.0)
    assert [(c.condition, c.a, c.b) for c in comparisons] == [
        (cond, a, b)
        for cond in ("c", "fast")
        for a, b in (("conv", "mts"), ("conv", "base"), ("mts", "base"))
    ]
    assert all(math.isfinite(c.difference.mean) for c in comparisons)
    csv_rows = stats.comparison_rows(comparisons)
    assert csv_rows[0]["zero_method"] == "pratt" and csv_rows[0]["pairs"] == 2


def test_condition_changes_pair_each_condition_with_the_reference_by_fold_and_seed():
    at_one = [0.70, 0.80, 0.75, 0.90, 0.60, 0.85]
    slow = [0.60, 0.80, 0.55, 0.70, 0.62, 0.65]  # one zero change
    rows = table({"mts": at_one, "conv": [0.5] * 6}, "tempo_1") + table(
        {"mts": slow, "conv": [0.5] * 5},
        "tempo_0.7",  # conv misses one run at 0.7
    )
    rows.reverse()  # pairs follow fold and seed, not the order of the rows
    changes = stats.condition_changes(rows, ["mts", "conv"], ["tempo_0.7", "tempo_1"], "tempo_1")
    assert [(c.variant, c.condition, c.reference) for c in changes] == [
        ("mts", "tempo_0.7", "tempo_1"),
        ("conv", "tempo_0.7", "tempo_1"),
    ]
    mts, conv = changes
    d = np.round(np.array(slow) - np.array(at_one), 9)
    assert mts.difference.mean == pytest.approx(d.mean()) and mts.difference.n == 6
    assert mts.p_value == pytest.approx(sps.wilcoxon(d, zero_method="pratt").pvalue)
    assert mts.zeros == 1 and mts.effect_size == pytest.approx(d.mean() / d.std(ddof=1))
    assert conv.difference.n == 5 and conv.note == "all differences are zero: no test"
    markdown = stats.summary_markdown(
        "x", *stats.summarize(rows, ["mts", "conv"], ["tempo_1"]), ["tempo_1"], changes
    )
    assert "UA change from the reference condition (tempo_1)" in markdown
    assert f"| mts | tempo_0.7 | 6 | {d.mean():+.3f} |" in markdown
    csv_rows = stats.change_rows(changes)
    assert csv_rows[0]["reference"] == "tempo_1" and csv_rows[1]["pairs"] == 5
