"""``PredictionCSVWriter``: the predictions of ``predict`` as one CSV row per audio file."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from typing_extensions import override

from mts_lightning.run_dir import run_dir

#: One prediction: its place in the dataset, the file, the class probabilities.
Row = tuple[int, str, list[float]]


class PredictionCSVWriter(BasePredictionWriter):
    """Writes the predictions of ``predict`` to a CSV file, one row per audio file.

    Columns: ``file``, ``predicted_emotion`` and one ``prob_<class>`` column per class, in
    the order of the files given to the datamodule (also under DDP, whose samplers interleave
    them). Works with batches of ``EmotionClassifier.predict_step``
    (``{"probabilities", "class_names", "paths"}``).

    Args:
        output_path: the CSV file; by default ``predictions.csv`` in the run's folder.
        print_path: print where the file went (and how many rows) when done.

    Attributes:
        written_path: where the last predict epoch's file went.
    """

    def __init__(self, output_path: str | None = None, print_path: bool = True) -> None:
        super().__init__(write_interval="batch")
        self.output_path = output_path
        self.print_path = print_path
        self.written_path: str | None = None
        self._rows: list[Row] = []
        self._class_names: list[str] = []

    @override
    def on_predict_epoch_start(self, *args: Any) -> None:
        self._rows = []

    @override
    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        *args: Any,
    ) -> None:
        if not isinstance(prediction, dict) or "probabilities" not in prediction:
            raise TypeError(
                "PredictionCSVWriter expects predict_step to return a dict with 'probabilities' "
                f"(as EmotionClassifier does), got {type(prediction).__name__}"
            )
        probabilities = prediction["probabilities"].detach().float().cpu().tolist()
        self._class_names = list(prediction.get("class_names") or [])
        if batch_indices is None:  # no sampler indices: this rank's running count
            start = len(self._rows)
            batch_indices = list(range(start, start + len(probabilities)))
        paths = prediction.get("paths")
        if paths is None:  # unnamed inputs: name them by their place in the dataset
            paths = [f"item_{i}" for i in batch_indices]
        self._rows += list(zip(batch_indices, map(str, paths), probabilities, strict=True))

    @override
    def on_predict_epoch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        rows = self._rows
        if trainer.world_size > 1 and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, rows)
            rows = [row for part in gathered for row in part]
        path = self.output_path or os.path.join(run_dir(trainer), "predictions.csv")
        path = trainer.strategy.broadcast(path)
        if trainer.is_global_zero:
            # Distributed samplers interleave the items: restore the dataset's order.
            self._write(path, sorted(rows, key=lambda row: row[0]))
        self.written_path = path

    def _write(self, path: str, rows: list[Row]) -> None:
        names = self._class_names or [str(i) for i in range(len(rows[0][2]) if rows else 0)]
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "predicted_emotion", *(f"prob_{n}" for n in names)])
            for _, file, probs in rows:
                best = max(range(len(probs)), key=probs.__getitem__)
                writer.writerow([file, names[best], *(f"{p:.6f}" for p in probs)])
        if self.print_path:
            print(f"Wrote {len(rows)} predictions to {path}", flush=True)
