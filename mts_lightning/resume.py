"""Resuming a stopped run in its own folder.

``mts-lightning fit --config RUN/config.yaml --ckpt_path RUN/checkpoints/last.ckpt`` goes on
writing into ``RUN``: the checkpoint callbacks then find their own folder and restore their
whole state (best score, best path; from another folder Lightning restores the best path only),
and the run keeps one ``metrics.csv``. Lightning's CSV logger deletes an existing
``metrics.csv`` when it starts; the rows logged up to the checkpoint are logged again first,
and the rows the stopped process wrote after it are dropped, since the resumed run redoes them.
"""

from __future__ import annotations

import csv
from pathlib import Path

from lightning.pytorch.loggers import Logger


def run_folder_of(ckpt_path: str | Path) -> Path | None:
    """The run folder of a checkpoint saved in ``RUN/checkpoints/``, else None."""
    path = Path(ckpt_path)
    if path.is_file() and path.parent.name == "checkpoints":
        return path.parent.parent
    return None


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def logged_rows(
    metrics_csv: str | Path, last_epoch: int
) -> list[tuple[int, dict[str, int | float]]]:
    """The ``(step, metrics)`` rows of a CSV logger's ``metrics.csv`` up to ``last_epoch``
    (rows without an epoch are kept), in file order; empty cells are left out."""
    path = Path(metrics_csv)
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            values = {k: _number(v) for k, v in row.items() if k and v not in (None, "")}
            step = int(values.pop("step", 0))
            if values.get("epoch", last_epoch) <= last_epoch:
                rows.append((step, values))
    return rows


def relog(logger: Logger, rows: list[tuple[int, dict[str, int | float]]]) -> None:
    """Log ``rows`` again through ``logger`` (its public ``log_metrics``), then write them."""
    for step, metrics in rows:
        logger.log_metrics(metrics, step=step)
    logger.save()
