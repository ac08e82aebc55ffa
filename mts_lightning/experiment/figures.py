"""Figures of an experiment's summary: UA against the test condition (one line per variant
with its 95% band) and UA per variant at the reference condition; as PNG files, and into an
offline or online W&B run when the experiment's runs log to W&B."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mts_lightning.cli import one_line
from mts_lightning.experiment.spec import ExperimentError
from mts_lightning.plotting import new_figure, save_figure

CONDITION_FIGURE = "ua_by_condition.png"
REFERENCE_FIGURE = "ua_reference.png"


def _ua(table: Sequence[dict[str, Any]], variant: str, condition: str) -> dict[str, Any] | None:
    for row in table:
        if row["variant"] == variant and row["condition"] == condition and row["metric"] == "UA":
            return row
    return None


#: Matplotlib's default cycle has 10 colours; past them a line changes its dash and marker,
#: so that no two variants of a large grid share a look.
_COLOURS = 10
_DASHES_AND_MARKERS = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"))


def line_style(index: int) -> dict[str, str]:
    """The colour, dash and marker of the ``index``-th variant's line: distinct for the first
    40 variants."""
    dash, marker = _DASHES_AND_MARKERS[(index // _COLOURS) % len(_DASHES_AND_MARKERS)]
    return {"color": f"C{index % _COLOURS}", "linestyle": dash, "marker": marker}


def condition_figure(
    table: Sequence[dict[str, Any]],
    variants: Sequence[str],
    conditions: Sequence[dict[str, Any]],
    x_label: str,
):
    """UA against the conditions' ``x`` (or their order, when any has none), one line per
    variant, its 95% interval as a band where there is one."""
    numeric = all(c["x"] is not None for c in conditions)
    order = sorted(conditions, key=lambda c: c["x"]) if numeric else list(conditions)
    positions = [c["x"] if numeric else i for i, c in enumerate(order)]
    fig = new_figure(6.5, 4.0)
    ax = fig.add_subplot()
    unbanded = False
    for index, variant in enumerate(variants):
        rows = [_ua(table, variant, c["name"]) for c in order]
        points = [(x, r) for x, r in zip(positions, rows, strict=True) if r is not None]
        if not points:
            continue
        xs = np.array([x for x, _ in points], dtype=float)
        means = [r["mean"] for _, r in points]
        line = ax.plot(xs, means, label=variant, **line_style(index))[0]
        banded = [(x, r) for x, r in points if r["ci95_low"] is not None]
        unbanded |= len(banded) < len(points)
        if banded:
            ax.fill_between(
                [x for x, _ in banded],
                [r["ci95_low"] for _, r in banded],
                [r["ci95_high"] for _, r in banded],
                color=line.get_color(),
                alpha=0.2,
                linewidth=0,
            )
    if not numeric:
        ax.set_xticks(positions, labels=[c["name"] for c in order], rotation=30, ha="right")
    ax.set_xlabel(x_label)
    ax.set_ylabel("test UA (mean, 95% CI)")
    if unbanded:
        ax.set_title("no band where a single run gives no interval", fontsize=9)
    ax.set_ylim(0.0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8 if len(variants) > 6 else None)
    return fig


def reference_figure(table: Sequence[dict[str, Any]], variants: Sequence[str], reference: str):
    """Bars of the mean UA per variant under ``reference``, with 95% intervals."""
    fig = new_figure(1.2 * max(len(variants), 3) + 1.5, 3.8)
    ax = fig.add_subplot()
    rows = [(v, _ua(table, v, reference)) for v in variants]
    rows = [(v, r) for v, r in rows if r is not None]
    means = [r["mean"] for _, r in rows]
    errors = np.array(
        [
            [r["mean"] - r["ci95_low"], r["ci95_high"] - r["mean"]]
            if r["ci95_low"] is not None
            else [0.0, 0.0]
            for _, r in rows
        ]
    ).T.reshape(2, len(rows))
    ax.bar(range(len(rows)), means, yerr=errors, capsize=4, color="tab:blue", alpha=0.8)
    ax.set_xticks(range(len(rows)), labels=[f"{v}\n(n={r['runs']})" for v, r in rows])
    ax.set_ylabel("test UA (mean, 95% CI)")
    ax.set_ylim(0.0, 1.02)
    single = " (no interval: single run)" if any(r["ci95_low"] is None for _, r in rows) else ""
    ax.set_title(f"condition: {reference}{single}")
    ax.grid(axis="y", alpha=0.3)
    return fig


def write_figures(
    output_dir: Path,
    table: Sequence[dict[str, Any]],
    description: dict[str, Any],
) -> list[Path]:
    """Save both figures as PNG beside the summary; return their paths."""
    variants = description["variants"]
    paths = [output_dir / CONDITION_FIGURE, output_dir / REFERENCE_FIGURE]
    save_figure(
        condition_figure(table, variants, description["conditions"], description["x_label"]),
        paths[0],
    )
    save_figure(reference_figure(table, variants, description["reference_condition"]), paths[1])
    return paths


def wandb_settings(run_folder: Path) -> dict[str, Any] | None:
    """The ``init_args`` of the W&B logger in a run's saved ``config.yaml``, or None.

    Raises ``ExperimentError`` naming the file when it is not a YAML mapping.
    """
    path = run_folder / "config.yaml"
    if not path.is_file():
        return None
    try:
        config = yaml.safe_load(path.read_bytes()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or one_line(str(err))
        raise ExperimentError(f"{path} is damaged (not YAML: {where}{problem})") from None
    if not isinstance(config, dict):
        raise ExperimentError(f"{path} is damaged (not a mapping of settings)")
    loggers = (config.get("trainer") or {}).get("logger")
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        if isinstance(logger, dict) and str(logger.get("class_path", "")).endswith("WandbLogger"):
            return dict(logger.get("init_args") or {})
    return None


def log_to_wandb(
    output_dir: Path,
    settings: dict[str, Any],
    description: dict[str, Any],
    table: Sequence[dict[str, Any]],
    comparisons: Sequence[dict[str, Any]],
    figures: Sequence[Path],
) -> str:
    """One W&B run ``<experiment>_summary`` (in ``output_dir/wandb``; offline when the runs'
    logger is) with the summary and paired-difference tables, a UA bar chart, and the PNG
    figures. Returns the run's local folder."""
    import wandb

    with summary_run(output_dir, settings, description) as run:
        columns = ["variant", "condition", "metric", "runs", "mean", "std", "ci95_low", "ci95_high"]
        summary = wandb.Table(columns=columns, data=[[row[c] for c in columns] for row in table])
        paired_columns = list(comparisons[0]) if comparisons else ["condition"]
        paired = wandb.Table(
            columns=paired_columns, data=[[row[c] for c in paired_columns] for row in comparisons]
        )
        reference = description["reference_condition"]
        bars = wandb.Table(
            columns=["variant", "UA"],
            data=[
                [row["variant"], row["mean"]]
                for row in table
                if row["condition"] == reference and row["metric"] == "UA"
            ],
        )
        run.log(
            {
                "experiment/summary": summary,
                "experiment/paired_differences": paired,
                "experiment/ua_reference_chart": wandb.plot.bar(
                    bars, "variant", "UA", title=f"test UA at {reference}"
                ),
                **{f"experiment/{p.stem}": wandb.Image(str(p)) for p in figures},
            }
        )
        return str(Path(run.dir).parent)


@contextmanager
def summary_run(
    output_dir: Path, settings: dict[str, Any], description: dict[str, Any]
) -> Iterator[Any]:
    """The experiment's W&B summary run ``<experiment>_summary`` (in ``output_dir/wandb``;
    offline when the runs' logger is), finished when the block ends."""
    import wandb

    run = wandb.init(
        project=settings.get("project") or "mts-lightning",
        name=f"{description['name']}_summary",
        dir=str(output_dir),
        mode="offline" if settings.get("offline") else None,  # else W&B's own setting
        job_type="experiment_summary",
        config={"experiment": description},
    )
    try:
        yield run
    finally:
        run.finish()
