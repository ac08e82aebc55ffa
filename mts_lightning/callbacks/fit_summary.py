"""``FitSummary``: what a ``fit`` reached and where its files are, printed when it ends."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from typing_extensions import override

from mts_lightning.run_dir import run_dir


class FitSummary(Callback):
    """At the end of ``fit``, prints (rank zero) the epochs, steps and time, the best
    checkpoint and its monitored score, the validation WA/UA/macro-F1 of the best and the
    last epoch, the clips a label set kept and left out (per class), every file of the run's
    folder (:func:`~mts_lightning.run_dir.run_dir`), and the commands that resume and test
    the run.

    Attributes:
        epochs: validation metrics (``val/...``) of every validation run of the fit, by
            epoch; sanity checks are left out.
    """

    def __init__(self) -> None:
        self.epochs: dict[int, dict[str, float]] = {}
        self.start_time = time.monotonic()

    @override
    def on_fit_start(self, *args: Any) -> None:
        self.start_time = time.monotonic()

    @override
    def on_validation_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        self.epochs[trainer.current_epoch] = {
            k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")
        }

    @override
    def on_fit_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.is_global_zero:
            print(self.summary(trainer), flush=True)

    def summary(self, trainer: pl.Trainer) -> str:
        """The summary's text."""
        folder = run_dir(trainer)
        lines = [
            "",
            f"Training finished: {trainer.current_epoch} epochs, {trainer.global_step} steps, "
            f"{time.monotonic() - self.start_time:.0f} s.",
        ]
        checkpoint = trainer.checkpoint_callback
        best_path = checkpoint.best_model_path if isinstance(checkpoint, ModelCheckpoint) else ""
        best_epoch = None
        if best_path and os.path.isfile(best_path):
            best_epoch = torch.load(best_path, map_location="cpu", weights_only=True).get("epoch")
            score = checkpoint.best_model_score
            monitor = f", {checkpoint.monitor} {float(score):.3f}" if score is not None else ""
            lines.append(f"  best checkpoint:  {best_path} (epoch {best_epoch}{monitor})")
        if self.epochs:
            shown = [("best", best_epoch)] if best_epoch in self.epochs else []
            shown.append(("last", max(self.epochs)))
            for label, epoch in shown:
                metrics = self.epochs[epoch]
                lines.append(
                    f"  validation ({label} epoch {epoch}): "
                    f"WA {metrics.get('val/WA', float('nan')):.3f}  "
                    f"UA {metrics.get('val/UA', float('nan')):.3f}  "
                    f"macro-F1 {metrics.get('val/macro_F1', float('nan')):.3f}"
                )
        report = getattr(trainer.datamodule, "label_set_report", None)
        if report is not None:
            lines.append(f"  {report.line()}")
        lines.append(f"  run folder (logs): {folder}")
        lines += [f"    {path}" for path in run_files(folder, best_epoch)]
        config_path = folder / "config.yaml"
        last_path = folder / "checkpoints" / "last.ckpt"
        if config_path.is_file() and last_path.is_file():
            lines.append(
                f"  resume it: mts-lightning fit --config {config_path} --ckpt_path {last_path}"
            )
        if config_path.is_file() and best_path:
            lines.append(
                f"  test it:  mts-lightning test --config {config_path} --ckpt_path {best_path}"
            )
        return "\n".join(lines)


def run_files(folder: Path, best_epoch: int | None = None) -> list[str]:
    """Every file of a run folder, sorted; of the per-epoch confusion matrices, those of the
    best epoch (else the last) with a count of the others."""
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    matrices = [p for p in files if p.parent.name == "confusion_matrix"]
    shown = [p for p in matrices if best_epoch is not None and f"epoch{best_epoch:03d}" in p.name]
    shown = shown or matrices[-1:]
    entries = []
    for path in files:
        if path in matrices and path not in shown:
            continue
        entry = str(path)
        if shown and path == shown[-1] and len(matrices) > len(shown):
            entry += f" (and {len(matrices) - len(shown)} more in {path.parent.name}/)"
        entries.append(entry)
    return entries
