"""The train x test matrix of a cross-corpus experiment (an experiment file with
``cross_corpus``): per variant, condition, training corpus and test corpus, the test UA over
folds x seeds (mean, standard deviation, 95% t-interval); the paired tests between variants
per cell (Wilcoxon signed-rank over the runs of equal fold and seed, as in
:mod:`~mts_lightning.experiment.stats`); ``summary.md`` with one matrix per variant, a heatmap
PNG, and a W&B table when the runs log to W&B.

The diagonal (a corpus tested on itself) is the run's own test split; every other cell tests
the whole corpus, all its speakers unseen.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mts_lightning.experiment import stats
from mts_lightning.experiment.figures import summary_run
from mts_lightning.io import atomic_write, write_csv
from mts_lightning.plotting import new_figure, save_figure

MATRIX_FIGURE = "cross_corpus_ua.png"
#: One cell of the matrix: (condition, variant, train corpus, test corpus).
Cell = tuple[str, str, str, str]


def _values(rows: Sequence[dict[str, Any]], cell: Cell, metric: str) -> dict[tuple, float]:
    condition, variant, train, test = cell
    return {
        (r["fold"], r["seed"]): float(r[metric])
        for r in rows
        if (r["condition"], r["variant"], r["train_corpus"], r["test_corpus"]) == cell
    }


def _cells(description: dict[str, Any]) -> list[Cell]:
    cross = description["cross_corpus"]
    return [
        (c["name"], v, train, test)
        for c in description["conditions"]
        for v in description["variants"]
        for train in cross["train"]
        for test in cross["test"]
    ]


def matrix_table(
    rows: Sequence[dict[str, Any]], description: dict[str, Any]
) -> list[dict[str, Any]]:
    """``summary.csv`` rows: per cell and metric (UA, WA, macro-F1), the runs, mean, sample
    standard deviation and 95% t-interval; cells without runs are left out."""
    table = []
    for cell in _cells(description):
        for metric in stats.SUMMARY_METRICS:
            values = list(_values(rows, cell, metric).values())
            if not values:
                continue
            e = stats.estimate(values)
            condition, variant, train, test = cell
            table.append(
                {
                    "condition": condition,
                    "variant": variant,
                    "train_corpus": train,
                    "test_corpus": test,
                    "metric": metric,
                    "runs": e.n,
                    "mean": e.mean,
                    "std": e.std,
                    "ci95_low": e.ci_low,
                    "ci95_high": e.ci_high,
                }
            )
    return table


def matrix_comparisons(
    rows: Sequence[dict[str, Any]], description: dict[str, Any]
) -> list[dict[str, Any]]:
    """``paired_differences.csv`` rows: per cell, the UA of every later variant against every
    earlier one, paired by fold and seed (cells where two variants share no run are left
    out)."""
    variants = description["variants"]
    cross = description["cross_corpus"]
    comparisons = []
    for condition in (c["name"] for c in description["conditions"]):
        for train in cross["train"]:
            for test in cross["test"]:
                for i, a in enumerate(variants):
                    for b in variants[i + 1 :]:
                        first = _values(rows, (condition, a, train, test), "UA")
                        second = _values(rows, (condition, b, train, test), "UA")
                        result = stats.signed_rank(first, second)
                        if result is None:
                            continue
                        comparison = stats.PairedComparison(condition, "UA", a, b, *result)
                        comparisons.append(
                            {
                                "condition": condition,
                                "train_corpus": train,
                                "test_corpus": test,
                                "metric": "UA",
                                "a": a,
                                "b": b,
                                **stats.comparison_columns(comparison),
                            }
                        )
    return comparisons


def _ua(table: Sequence[dict[str, Any]]) -> dict[Cell, dict[str, Any]]:
    return {
        (r["condition"], r["variant"], r["train_corpus"], r["test_corpus"]): r
        for r in table
        if r["metric"] == "UA"
    }


def _interval(row: dict[str, Any]) -> str:
    if row["ci95_low"] is None:
        return f"{row['mean']:.3f} (n={row['runs']})"
    return f"{row['mean']:.3f} [{row['ci95_low']:.3f}, {row['ci95_high']:.3f}]"


def matrix_markdown(
    description: dict[str, Any],
    table: Sequence[dict[str, Any]],
    comparisons: Sequence[dict[str, Any]],
) -> str:
    """``summary.md``: one train x test matrix of the test UA per variant (and condition),
    the mean UA off the diagonal, then the paired UA differences per cell."""
    cross = description["cross_corpus"]
    conditions = [c["name"] for c in description["conditions"]]
    label_set = cross["label_set"]
    label_set = label_set if isinstance(label_set, str) or label_set is None else "inline"
    normalisation = (
        "the test corpus's own statistics"
        if cross["normalise_with"] == "test"
        else "the training corpus's statistics"
    )
    lines = [
        f"# {description['name']}",
        "",
        f"Train x test matrix: rows are the corpus trained on, columns the corpus tested on, "
        f"label set {label_set}; test corpora {'balanced per class' if cross['balance_test'] else 'as they are'}; "
        f"normalisation with {normalisation}. The diagonal is each run's own test split, every "
        "other cell the whole test corpus. Cells: test UA, mean over folds x seeds and its "
        f"{stats.CONFIDENCE:.0%} t-interval (n = runs where a single run gives no interval).",
    ]
    ua = _ua(table)
    for condition in conditions:
        for variant in description["variants"]:
            title = variant if len(conditions) == 1 else f"{variant}, condition {condition}"
            lines += [
                "",
                f"## {title}",
                "",
                "| train \\ test | " + " | ".join(cross["test"]) + " |",
                "|---|" + "---|" * len(cross["test"]),
            ]
            off_diagonal = []
            for train in cross["train"]:
                cells = []
                for test in cross["test"]:
                    row = ua.get((condition, variant, train, test))
                    cells.append("n/a" if row is None else _interval(row))
                    if row is not None and train != test:
                        off_diagonal.append(row["mean"])
                lines.append(f"| {train} | " + " | ".join(cells) + " |")
            if off_diagonal:
                lines += [
                    "",
                    f"Mean UA off the diagonal (trained on one corpus, tested on another): "
                    f"{np.mean(off_diagonal):.3f} over {len(off_diagonal)} cells.",
                ]
    lines += [
        "",
        "## Paired UA differences per cell",
        "",
        "B - A, paired by fold and seed: Wilcoxon signed-rank test (scipy, "
        f"zero_method='{stats.ZERO_METHOD}', two-sided); d_z = mean difference / standard "
        "deviation of the differences.",
        "",
        "| condition | train | test | A | B | pairs | mean B - A | 95% CI | Wilcoxon p | d_z | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        interval = (
            "n/a" if c["ci95_low"] is None else f"[{c['ci95_low']:+.3f}, {c['ci95_high']:+.3f}]"
        )
        lines.append(
            f"| {c['condition']} | {c['train_corpus']} | {c['test_corpus']} | {c['a']} | "
            f"{c['b']} | {c['pairs']} | {c['mean_difference']:+.3f} | {interval} | "
            f"{stats.format_number(c['p_value'], 4)} | {stats.format_number(c['effect_size_dz'], 2)} | "
            f"{c['note']} |"
        )
    return "\n".join(lines) + "\n"


def matrix_figure(table: Sequence[dict[str, Any]], description: dict[str, Any], condition: str):
    """Heatmaps of the mean test UA, train corpora down, test corpora across: one per
    variant, then each later variant minus the first (cells without runs blank)."""
    cross = description["cross_corpus"]
    variants = description["variants"]
    trains, tests = cross["train"], cross["test"]
    ua = _ua(table)

    def means(variant: str) -> np.ndarray:
        grid = np.full((len(trains), len(tests)), np.nan)
        for i, train in enumerate(trains):
            for j, test in enumerate(tests):
                row = ua.get((condition, variant, train, test))
                if row is not None:
                    grid[i, j] = row["mean"]
        return grid

    panels = [(v, means(v), "viridis", (0.0, 1.0)) for v in variants]
    panels += [
        (f"{v} - {variants[0]}", means(v) - means(variants[0]), "RdBu", (-0.5, 0.5))
        for v in variants[1:]
    ]
    size = 0.9 * max(len(tests), 2) + 1.5
    fig = new_figure(size * len(panels), 0.9 * max(len(trains), 2) + 1.6)
    for k, (title, grid, cmap, (low, high)) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, len(panels), k)
        image = ax.imshow(grid, cmap=cmap, vmin=low, vmax=high)
        for (i, j), value in np.ndenumerate(grid):
            if not np.isnan(value):
                ax.text(
                    j,
                    i,
                    f"{value:+.2f}" if cmap == "RdBu" else f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if cmap == "viridis" and value < 0.5 else "black",
                )
        ax.set_xticks(range(len(tests)), labels=tests, rotation=45, ha="right")
        ax.set_yticks(range(len(trains)), labels=trains)
        ax.set_xlabel("tested on")
        if k == 1:
            ax.set_ylabel("trained on")
        ax.set_title(f"test UA: {title}", fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return fig


def write_matrix_outputs(
    output_dir: Path,
    rows: Sequence[dict[str, Any]],
    description: dict[str, Any],
    wandb_settings: dict[str, Any] | None,
) -> dict[str, Any]:
    """``summary.md``, ``summary.csv``, ``paired_differences.csv`` and one heatmap PNG per
    condition (``cross_corpus_ua.png``, or ``cross_corpus_ua_<condition>.png`` with several)
    beside ``results.csv``, and a W&B summary run when ``wandb_settings`` (those of the
    runs' logger) are given."""
    table = matrix_table(rows, description)
    comparisons = matrix_comparisons(rows, description)
    markdown = matrix_markdown(description, table, comparisons)
    files = [output_dir / "results.csv", output_dir / "summary.md"]
    atomic_write(files[1], lambda f: f.write(markdown.encode()))
    for name, content in (("summary.csv", table), ("paired_differences.csv", comparisons)):
        files.append(output_dir / name)
        write_csv(files[-1], content)
    conditions = [c["name"] for c in description["conditions"]]
    pngs = []
    for condition in conditions:
        stem = Path(MATRIX_FIGURE).stem
        name = MATRIX_FIGURE if len(conditions) == 1 else f"{stem}_{condition}.png"
        pngs.append(output_dir / name)
        save_figure(matrix_figure(table, description, condition), pngs[-1])
    files += pngs
    wandb_dir = None
    if wandb_settings is not None:
        wandb_dir = log_matrix_to_wandb(
            output_dir, wandb_settings, description, table, comparisons, pngs
        )
    return {
        "rows": list(rows),
        "table": table,
        "comparisons": comparisons,
        "files": files,
        "wandb_dir": wandb_dir,
    }


def log_matrix_to_wandb(
    output_dir: Path,
    settings: dict[str, Any],
    description: dict[str, Any],
    table: Sequence[dict[str, Any]],
    comparisons: Sequence[dict[str, Any]],
    pngs: Sequence[Path],
) -> str:
    """One W&B run ``<experiment>_summary`` (in ``output_dir/wandb``; offline when the runs'
    logger is) with the matrix as a table (one row per cell and metric), the paired tests and
    the heatmaps. Returns the run's local folder."""
    import wandb

    with summary_run(output_dir, settings, description) as run:
        columns = list(table[0]) if table else ["condition"]
        paired_columns = list(comparisons[0]) if comparisons else ["condition"]
        run.log(
            {
                "experiment/cross_corpus": wandb.Table(
                    columns=columns, data=[[row[c] for c in columns] for row in table]
                ),
                "experiment/paired_differences": wandb.Table(
                    columns=paired_columns,
                    data=[[row[c] for c in paired_columns] for row in comparisons],
                ),
                **{f"experiment/{p.stem}": wandb.Image(str(p)) for p in pngs},
            }
        )
        return str(Path(run.dir).parent)


__all__ = [
    "MATRIX_FIGURE",
    "matrix_comparisons",
    "matrix_figure",
    "matrix_markdown",
    "matrix_table",
    "write_matrix_outputs",
]
