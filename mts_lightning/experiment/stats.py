"""Statistics of an experiment's ``results.csv``: per variant and condition, mean, standard
deviation and a 95% t-interval over folds x seeds; paired differences between variants, and
between each condition and the reference condition within a variant (paired by fold and
seed), with the Wilcoxon signed-rank test and an effect size.

All tests come from scipy. Zero differences (ties between the two variants of a pair) are kept
in the ranking and then dropped (``zero_method="pratt"``, Pratt 1959), which is more
conservative than dropping them first; the number of zero differences is reported. Ties among
the absolute differences get average ranks, and scipy then uses the normal approximation
(with tie correction) instead of the exact distribution. Differences are rounded to 9
decimals first, so differences equal in exact arithmetic tie.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ZERO_METHOD = "pratt"
SUMMARY_METRICS = ("UA", "WA", "macro_F1")
#: Decimals kept of a paired difference (see ``paired``).
DIGITS = 9


@dataclass(frozen=True)
class Estimate:
    """Mean over ``n`` runs with sample standard deviation and a t-interval (None when n < 2)."""

    n: int
    mean: float
    std: float | None
    ci_low: float | None
    ci_high: float | None


@dataclass(frozen=True)
class PairedComparison:
    """``b - a`` over the (fold, seed) pairs both variants have, under one condition."""

    condition: str
    metric: str
    a: str
    b: str
    difference: Estimate
    zeros: int
    wilcoxon_statistic: float | None
    p_value: float | None
    effect_size: float | None
    note: str


def estimate(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """Mean, sample std (ddof 1) and the t-interval of the mean (scipy.stats.t.interval)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("estimate needs at least one value")
    mean = float(x.mean())
    if x.size < 2:
        return Estimate(1, mean, None, None, None)
    std = float(x.std(ddof=1)) if np.ptp(x) > 0 else 0.0
    if std == 0.0:  # every run equal: the interval is the point (scipy gives nan for scale 0)
        return Estimate(int(x.size), mean, 0.0, mean, mean)
    low, high = stats.t.interval(confidence, x.size - 1, loc=mean, scale=std / math.sqrt(x.size))
    return Estimate(int(x.size), mean, std, float(low), float(high))


@dataclass(frozen=True)
class ConditionChange:
    """``metric`` under ``condition`` minus under ``reference``, for one variant, over the
    (fold, seed) runs tested under both: how far a condition moves the variant."""

    variant: str
    condition: str
    reference: str
    metric: str
    difference: Estimate
    zeros: int
    wilcoxon_statistic: float | None
    p_value: float | None
    effect_size: float | None
    note: str


def _cells(
    rows: Sequence[dict[str, Any]], variant: str, condition: str, metric: str
) -> dict[tuple[Any, Any], float]:
    return {
        (r["fold"], r["seed"]): float(r[metric])
        for r in rows
        if r["variant"] == variant and r["condition"] == condition
    }


def signed_rank(
    first: dict[tuple[Any, Any], float], second: dict[tuple[Any, Any], float]
) -> tuple[Estimate, int, float | None, float | None, float | None, str] | None:
    """The paired test of ``second - first`` over their common (fold, seed) keys.

    Args:
        first, second: one metric per run, keyed by ``(fold, seed)``.

    Returns:
        ``(difference, zeros, statistic, p_value, effect_size, note)``: the
        :class:`Estimate` of the differences (rounded to :data:`DIGITS` decimals), the number
        of zero differences, the Wilcoxon signed-rank statistic and two-sided p-value
        (``zero_method`` :data:`ZERO_METHOD`; None with one pair or all differences zero),
        the effect size d_z (mean difference / their standard deviation; None when they do
        not vary) and a note saying why a figure is missing; None when no key is shared.
        The fields are those of :class:`PairedComparison` after its labels, in order.
    """
    keys = sorted(set(first) & set(second))
    if not keys:
        return None
    # Metrics are ratios of counts: differences that are equal (or zero) in exact arithmetic
    # must stay ties for the ranks, not differ in the 17th digit.
    differences = np.round([second[k] - first[k] for k in keys], DIGITS)
    zeros = int((differences == 0).sum())
    statistic = p_value = effect = None
    if len(keys) < 2:
        note = "one pair: no test, no interval"
    elif zeros == len(keys):
        note = "all differences are zero: no test"
    else:
        result = stats.wilcoxon(differences, zero_method=ZERO_METHOD)
        statistic, p_value = float(result.statistic), float(result.pvalue)
        note = f"{zeros} zero difference(s)" if zeros else ""
    spread = float(differences.std(ddof=1)) if np.ptp(differences) > 0 else 0.0
    if spread > 0:
        effect = float(differences.mean()) / spread
    elif len(keys) > 1 and zeros < len(keys):
        note = "; ".join(filter(None, [note, "every difference equal: effect size undefined"]))
    return estimate(differences), zeros, statistic, p_value, effect, note


def paired(
    rows: Sequence[dict[str, Any]], condition: str, metric: str, a: str, b: str
) -> PairedComparison:
    """Compare variant ``b`` with ``a`` under ``condition`` on the runs of equal fold and seed."""
    result = signed_rank(_cells(rows, a, condition, metric), _cells(rows, b, condition, metric))
    if result is None:
        raise ValueError(f"{a} and {b} share no (fold, seed) under condition {condition!r}")
    return PairedComparison(condition, metric, a, b, *result)


def condition_changes(
    rows: Sequence[dict[str, Any]],
    variants: Sequence[str],
    conditions: Sequence[str],
    reference: str,
    metric: str = "UA",
) -> list[ConditionChange]:
    """Per variant, every other condition against ``reference``, paired by fold and seed
    (e.g. UA at tempo 0.7 minus UA at tempo 1.0 of the same runs)."""
    changes = []
    for variant in variants:
        base = _cells(rows, variant, reference, metric)
        for condition in conditions:
            if condition == reference:
                continue
            result = signed_rank(base, _cells(rows, variant, condition, metric))
            if result is not None:
                changes.append(ConditionChange(variant, condition, reference, metric, *result))
    return changes


def summarize(
    rows: Sequence[dict[str, Any]], variants: Sequence[str], conditions: Sequence[str]
) -> tuple[list[dict[str, Any]], list[PairedComparison]]:
    """Per (variant, condition, metric) estimates as ``summary.csv`` rows, and the UA paired
    comparisons of every later variant against every earlier one, per condition."""
    table = []
    for condition in conditions:
        for variant in variants:
            for metric in SUMMARY_METRICS:
                values = [
                    float(r[metric])
                    for r in rows
                    if r["variant"] == variant and r["condition"] == condition
                ]
                if not values:
                    continue
                e = estimate(values)
                table.append(
                    {
                        "variant": variant,
                        "condition": condition,
                        "metric": metric,
                        "runs": e.n,
                        "mean": e.mean,
                        "std": e.std,
                        "ci95_low": e.ci_low,
                        "ci95_high": e.ci_high,
                    }
                )
    present = [v for v in variants if any(r["variant"] == v for r in rows)]
    comparisons = []
    for condition in conditions:
        for i, a in enumerate(present):
            for b in present[i + 1 :]:
                try:
                    comparisons.append(paired(rows, condition, "UA", a, b))
                except ValueError:
                    continue  # no common runs (yet): nothing to compare
    return table, comparisons


def format_number(value: float | None, digits: int = 3) -> str:
    """``value`` with ``digits`` decimals for a Markdown table, or ``n/a`` for None.

    >>> format_number(0.12345), format_number(None), format_number(0.5, 1)
    ('0.123', 'n/a', '0.5')
    """
    return "n/a" if value is None else f"{value:.{digits}f}"


def _signed_interval(d: Estimate) -> str:
    """A difference's 95% interval with signs, or n/a."""
    return "n/a" if d.ci_low is None else f"[{d.ci_low:+.3f}, {d.ci_high:+.3f}]"


def summary_markdown(
    name: str,
    table: Sequence[dict[str, Any]],
    comparisons: Sequence[PairedComparison],
    conditions: Sequence[str],
    changes: Sequence[ConditionChange] = (),
) -> str:
    """``summary.md``: UA (with WA and macro-F1 means) per condition and variant, the paired
    UA differences between variants, then each variant's UA change from the reference
    condition (when ``changes`` are given)."""
    lines = [
        f"# {name}",
        "",
        f"Mean over folds x seeds, sample standard deviation, and the {CONFIDENCE:.0%} t-interval "
        "of the mean; n/a where one run gives no spread and no interval.",
        "",
        "| condition | variant | runs | UA mean | UA std | UA 95% CI | WA mean | macro-F1 mean |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by_key = {(r["variant"], r["condition"], r["metric"]): r for r in table}
    for condition in conditions:
        for row in (r for r in table if r["condition"] == condition and r["metric"] == "UA"):
            wa = by_key[(row["variant"], condition, "WA")]
            f1 = by_key[(row["variant"], condition, "macro_F1")]
            interval = (
                "n/a (single run)"
                if row["ci95_low"] is None
                else f"[{row['ci95_low']:.3f}, {row['ci95_high']:.3f}]"
            )
            lines.append(
                f"| {condition} | {row['variant']} | {row['runs']} | {row['mean']:.3f} | "
                f"{format_number(row['std'])} | {interval} | {wa['mean']:.3f} | {f1['mean']:.3f} |"
            )
    lines += [
        "",
        "Paired UA differences (B - A, paired by fold and seed): Wilcoxon signed-rank test "
        f"(scipy, zero_method='{ZERO_METHOD}', two-sided); effect size d_z = mean difference / "
        "standard deviation of the differences.",
        "",
        "| condition | A | B | pairs | mean B - A | 95% CI | Wilcoxon p | d_z | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        d = c.difference
        interval = _signed_interval(d)
        lines.append(
            f"| {c.condition} | {c.a} | {c.b} | {d.n} | {d.mean:+.3f} | {interval} | "
            f"{format_number(c.p_value, 4)} | {format_number(c.effect_size, 2)} | {c.note} |"
        )
    if changes:
        lines += [
            "",
            f"UA change from the reference condition ({changes[0].reference}) within each "
            "variant (condition - reference, paired by fold and seed): the same test.",
            "",
            "| variant | condition | pairs | mean change | 95% CI | Wilcoxon p | d_z | note |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c in changes:
            d = c.difference
            interval = _signed_interval(d)
            lines.append(
                f"| {c.variant} | {c.condition} | {d.n} | {d.mean:+.3f} | {interval} | "
                f"{format_number(c.p_value, 4)} | {format_number(c.effect_size, 2)} | {c.note} |"
            )
    return "\n".join(lines) + "\n"


def comparison_columns(c: PairedComparison | ConditionChange) -> dict[str, Any]:
    """The CSV columns of a paired test (``pairs``, ``mean_difference``, ..., ``note``),
    shared by both kinds of comparison and by the cross-corpus matrix's comparisons."""
    return {
        "pairs": c.difference.n,
        "mean_difference": c.difference.mean,
        "std_difference": c.difference.std,
        "ci95_low": c.difference.ci_low,
        "ci95_high": c.difference.ci_high,
        "zero_differences": c.zeros,
        "wilcoxon_statistic": c.wilcoxon_statistic,
        "p_value": c.p_value,
        "zero_method": ZERO_METHOD,
        "effect_size_dz": c.effect_size,
        "note": c.note,
    }


def comparison_rows(comparisons: Sequence[PairedComparison]) -> list[dict[str, Any]]:
    """``paired_differences.csv`` rows."""
    return [
        {
            "condition": c.condition,
            "metric": c.metric,
            "a": c.a,
            "b": c.b,
            **comparison_columns(c),
        }
        for c in comparisons
    ]


def change_rows(changes: Sequence[ConditionChange]) -> list[dict[str, Any]]:
    """``condition_differences.csv`` rows."""
    return [
        {
            "variant": c.variant,
            "condition": c.condition,
            "reference": c.reference,
            "metric": c.metric,
            **comparison_columns(c),
        }
        for c in changes
    ]
