"""``StretchUsageLogger``: which time scale wins (or, for a soft merge rule, how much weight
each scale receives), per MTS layer and branch, epoch by epoch."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor
from typing_extensions import override

from mts_lightning.callbacks.kernel_averaging import MTS_LAYER_TYPES
from mts_lightning.plotting import (
    log_figure,
    save_figure,
    stretch_usage_bar_figure,
    stretch_usage_history_figure,
)
from mts_lightning.run_dir import run_dir

STAGES = ("train", "val", "test")
#: The y label of a branch's fraction under a soft merge rule (under ``merge="max"`` it is
#: the share of the elements it won).
WEIGHT_LABEL = "mean weight received"


def format_scale(scale: tuple[float, float]) -> str:
    """Compact label of a branch: ``x1``, ``x0.7``, ``x1.428``; ``x0.7_f1.2`` if freq != 1."""
    s_time, s_freq = scale
    label = f"x{s_time:g}"
    return label if s_freq == 1.0 else f"{label}_f{s_freq:g}"


class StretchUsageLogger(Callback):
    """Log the fraction of output elements each branch of each MTS layer won, per epoch; for a
    layer with a soft ``merge`` rule, the mean weight each branch received.

    For every stage in ``stages`` the callback adds up, over the epoch, the usage of each
    branch (base first) in every MTS layer of the LightningModule: under ``merge="max"`` (the
    published rule) the elements it won; under a soft rule (``mean``, ``logsumexp``,
    ``softmax``, ``attention``), where every branch contributes to every element, the weight
    it received summed over the elements, so its fraction is the mean weight it received.
    It reads the layers' ``stretch_usage_counts`` before and after each batch and keeps the
    difference, so it never resets the layers' own counters and training and validation batches
    stay apart even when validation runs inside a training epoch. Counting stays on the device;
    at the end of the epoch the counts of all layers are summed across devices in one all-reduce
    (run on every rank), then rank zero logs:

    - scalars ``stretch_usage/{stage}/{layer}/x{scale}`` (fractions, summing to 1 per
      layer: the share of wins, or for a soft rule the mean weight) to every logger, with
      ``epoch``, at the trainer's global step;
    - with ``log_figures``: a bar chart per epoch to TensorBoard and W&B (figure tag
      ``stretch_usage/{stage}/bars``), and to W&B a table ``stretch_usage/{stage}/table``;
    - with ``save_png``: at the end of fit, ``{log_dir}/stretch_usage.png``, every branch's
      fraction across epochs.

    The figures say which they show: a soft layer's panel is labelled "mean weight received"
    and names its rule, and the bar chart's title and axis say when its bars are weights.

    ``layer`` is the layer's qualified name in the LightningModule (``backbone.features.0``).
    A layer that ran no branch in an epoch (e.g. ``training_mode="only_eval"`` while
    training) is left out of that epoch. Sanity-check validation is not counted.

    The results stay available to Python code, identical on every rank: ``history[stage]`` is a
    list with one dict per epoch, layer name -> NumPy array of fractions (base first);
    ``history_counts`` the same with the summed counts (int64 wins; float64 summed weights for a
    soft rule); ``soft_layers`` the names of the layers with a soft rule; ``epochs[stage]`` the
    epoch number of each entry; ``branch_labels[layer]`` the scale labels. All of it, and the
    counts of an unfinished training epoch, are in ``state_dict``, so a resumed run goes on
    where the checkpoint left off.

    Args:
        stages: the stages to count, among ``"train"``, ``"val"`` and ``"test"``.
        log_figures: also log the per-epoch bar chart (TensorBoard, W&B) and W&B table.
        save_png: save ``stretch_usage.png`` in the log directory at the end of fit.

    Example:
        The share of outputs each time scale won, per epoch, in any LightningModule:

        >>> import lightning.pytorch as pl
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from mts_lightning import MultiscaleConv2d, StretchUsageLogger
        >>> class Tiny(pl.LightningModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.conv = MultiscaleConv2d(1, 2, (5, 3), scale_factors=[0.7, 1.428],
        ...                                      kernel_sharing="autograd")
        ...     def training_step(self, batch, batch_idx):
        ...         return self.conv(batch[0]).square().mean()
        ...     def configure_optimizers(self):
        ...         return torch.optim.SGD(self.parameters(), lr=0.1)
        >>> loader = DataLoader(TensorDataset(torch.randn(8, 1, 32, 16)), batch_size=4)
        >>> usage = StretchUsageLogger(stages=("train",), save_png=False)
        >>> trainer = pl.Trainer(max_epochs=2, callbacks=[usage], logger=False,
        ...                      enable_checkpointing=False, enable_progress_bar=False,
        ...                      enable_model_summary=False)
        >>> trainer.fit(Tiny(), loader)
        >>> usage.branch_labels
        {'conv': ['x1', 'x0.7', 'x1.428']}
        >>> len(usage.history["train"]), round(float(usage.history["train"][-1]["conv"].sum()), 6)
        (2, 1.0)
    """

    def __init__(
        self,
        stages: Iterable[str] = ("train", "val"),
        log_figures: bool = True,
        save_png: bool = True,
    ) -> None:
        stages = (stages,) if isinstance(stages, str) else tuple(stages)
        unknown = [s for s in stages if s not in STAGES]
        if unknown or not stages:
            raise ValueError(f"stages must be a non-empty selection of {STAGES}, got {stages!r}")
        self.stages = tuple(dict.fromkeys(stages))
        self.log_figures = bool(log_figures)
        self.save_png = bool(save_png)
        self.history: dict[str, list[dict[str, np.ndarray]]] = {s: [] for s in self.stages}
        self.history_counts: dict[str, list[dict[str, np.ndarray]]] = {s: [] for s in self.stages}
        self.epochs: dict[str, list[int]] = {s: [] for s in self.stages}
        self.branch_labels: dict[str, list[str]] = {}
        self.soft_layers: set[str] = set()
        self._layers: dict[str, torch.nn.Module] = {}
        self._totals: dict[str, dict[str, Tensor] | None] = {s: None for s in self.stages}
        self._batch_start: dict[str, Tensor] = {}
        self._totals_epoch: dict[str, int] = {}
        self._restored_train: dict[str, Any] | None = None
        self._trainer: pl.Trainer | None = None

    # ------------------------------------------------------------------ set-up
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer
        self._layers = {
            name: m for name, m in pl_module.named_modules() if isinstance(m, MTS_LAYER_TYPES)
        }
        self.branch_labels = {
            name: [format_scale(s) for s in m.branch_scales] for name, m in self._layers.items()
        }
        self.soft_layers = {name for name, m in self._layers.items() if m.merge != "max"}

    @override
    def teardown(self, *args: Any, **kwargs: Any) -> None:
        self._trainer = None

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        restored, self._restored_train = self._restored_train, None
        if restored is None:
            return
        counts = {
            name: torch.tensor(c, dtype=self._usage_dtype(name))
            for name, c in restored["counts"].items()
        }
        if restored["epoch"] < trainer.current_epoch:
            # Saved in `on_train_epoch_end` before this callback's hook ran (a user's callback
            # listed earlier): that epoch is complete and training resumes at the next one.
            self._record("train", restored["epoch"], counts)
        else:
            # Saved mid-epoch, or when validation ended (Lightning then resumes in the same
            # epoch, up to its end hook). The saved counts are the sum over every rank: rank zero
            # carries them, the others start from zero, and the epoch-end sum is right.
            keep = trainer.global_rank == 0
            self._totals["train"] = {
                n: (c if keep else torch.zeros_like(c)).to(pl_module.device)
                for n, c in counts.items()
            }
            self._totals_epoch["train"] = restored["epoch"]

    # ------------------------------------------------------------------ counting
    def _start_epoch(self, stage: str, trainer: pl.Trainer) -> None:
        if stage not in self.stages or trainer.sanity_checking:
            return
        totals = self._totals[stage]
        if totals is not None and self._totals_epoch.get(stage) == trainer.current_epoch:
            return  # counts restored from a mid-epoch checkpoint
        self._totals[stage] = {
            name: torch.zeros(m.num_branches, dtype=self._usage_dtype(name), device=m.weight.device)
            for name, m in self._layers.items()
        }
        self._totals_epoch[stage] = trainer.current_epoch

    def _usage_dtype(self, name: str) -> torch.dtype:
        """int64 for a layer's wins, float64 for its summed weights (a soft rule)."""
        return torch.float64 if name in self.soft_layers else torch.long

    def _start_batch(self, stage: str, trainer: pl.Trainer) -> None:
        if stage not in self.stages or trainer.sanity_checking:
            return
        self._batch_start = {n: m.stretch_usage_counts.clone() for n, m in self._layers.items()}

    def _end_batch(self, stage: str, trainer: pl.Trainer) -> None:
        if stage not in self.stages or trainer.sanity_checking or self._totals[stage] is None:
            return
        totals = self._totals[stage]
        for name, layer in self._layers.items():
            now = layer.stretch_usage_counts
            before = self._batch_start[name].to(now.device)
            # If someone reset the layer's counters during the batch, `now` is all there is.
            totals[name] += torch.where(now >= before, now - before, now).to(totals[name].device)

    def _end_epoch(self, stage: str, trainer: pl.Trainer) -> None:
        if stage not in self.stages or trainer.sanity_checking or self._totals[stage] is None:
            return
        counts = self._reduce(trainer, self._totals[stage])
        self._totals[stage] = None
        self._record(stage, trainer.current_epoch, counts)
        if trainer.is_global_zero:
            self._log_epoch(stage, trainer)

    def _reduce(self, trainer: pl.Trainer, totals: dict[str, Tensor]) -> dict[str, Tensor]:
        """Sum the counts over every rank with one all-reduce; collective, call on all ranks."""
        if not totals:
            return {}
        # One all-reduce for every layer: wins travel as float64 beside summed weights
        # (exact below 2**53) and come back as int64.
        mixed = len({t.dtype for t in totals.values()}) > 1
        flat = torch.cat([t.double() if mixed else t for t in totals.values()])
        if trainer.world_size > 1:
            flat = trainer.strategy.reduce(flat, reduce_op="sum")
        sizes = [t.numel() for t in totals.values()]
        parts = flat.cpu().split(sizes)
        return {
            name: part.to(t.dtype) for (name, t), part in zip(totals.items(), parts, strict=True)
        }

    def _record(self, stage: str, epoch: int, counts: dict[str, Tensor]) -> None:
        fractions, kept = {}, {}
        for name, c in counts.items():
            c = c.cpu().numpy()
            c = c.astype(np.float64 if name in self.soft_layers else np.int64)
            if c.sum() > 0:
                kept[name] = c
                fractions[name] = c / c.sum()
        self.history[stage].append(fractions)
        self.history_counts[stage].append(kept)
        self.epochs[stage].append(int(epoch))

    # ------------------------------------------------------------------ output (rank zero)
    def _log_epoch(self, stage: str, trainer: pl.Trainer) -> None:
        fractions = self.history[stage][-1]
        metrics: dict[str, float] = {
            f"stretch_usage/{stage}/{name}/{label}": float(value)
            for name, values in fractions.items()
            for label, value in zip(self.branch_labels[name], values, strict=True)
        }
        if not metrics:
            return
        metrics["epoch"] = trainer.current_epoch
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        if self.log_figures:
            self._log_epoch_figures(stage, trainer, fractions)

    def _log_epoch_figures(
        self, stage: str, trainer: pl.Trainer, fractions: dict[str, np.ndarray]
    ) -> None:
        from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

        if not any(isinstance(lg, (TensorBoardLogger, WandbLogger)) for lg in trainer.loggers):
            return
        title = f"stretch usage, {stage}, epoch {trainer.current_epoch}"
        soft = self.soft_layers & set(fractions)
        if soft:
            title += (
                ": mean weight per scale" if soft == set(fractions) else ", soft layers: weight"
            )
        fig = stretch_usage_bar_figure(fractions, self.branch_labels, title)
        if soft:
            label = WEIGHT_LABEL if soft == set(fractions) else "fraction won (max) or mean weight"
            fig.axes[0].set_ylabel(label)
        log_figure(trainer, f"stretch_usage/{stage}/bars", fig)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                rows = [
                    [trainer.current_epoch, name, label, float(value)]
                    for name, values in fractions.items()
                    for label, value in zip(self.branch_labels[name], values, strict=True)
                ]
                table = wandb.Table(columns=["epoch", "layer", "scale", "fraction"], data=rows)
                logger.log_metrics(
                    {f"stretch_usage/{stage}/table": table}, step=trainer.global_step
                )

    @override
    def on_fit_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if not (self.save_png and trainer.is_global_zero and self.branch_labels):
            return
        if not any(self.history[s] for s in self.stages):
            return
        fig = stretch_usage_history_figure(self.history, self.epochs, self.branch_labels)
        # One panel per layer, in branch_labels' order: a soft layer's panel shows weights.
        for axes, name in zip(fig.axes, self.branch_labels, strict=False):
            if name in self.soft_layers:
                axes.set_ylabel(WEIGHT_LABEL)
                axes.set_title(f"{name} (mean weight, merge={self._layers[name].merge})")
        save_figure(fig, os.path.join(run_dir(trainer), "stretch_usage.png"))

    # ------------------------------------------------------------------ hooks
    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self._start_epoch("train", trainer)

    @override
    def on_validation_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self._start_epoch("val", trainer)

    @override
    def on_test_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self._start_epoch("test", trainer)

    @override
    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self._start_batch("train", trainer)

    @override
    def on_validation_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self._start_batch("val", trainer)

    @override
    def on_test_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self._start_batch("test", trainer)

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self._end_batch("train", trainer)

    @override
    def on_validation_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self._end_batch("val", trainer)

    @override
    def on_test_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self._end_batch("test", trainer)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self._end_epoch("train", trainer)

    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self._end_epoch("val", trainer)

    @override
    def on_test_epoch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self._end_epoch("test", trainer)

    # ------------------------------------------------------------------ state
    @override
    def state_dict(self) -> dict[str, Any]:
        train_totals = self._totals.get("train")
        pending = None
        if train_totals is not None:
            # Lightning writes checkpoints from every rank at once (`save_checkpoint` must run on
            # all of them), so summing here is safe and the checkpoint holds every rank's part.
            trainer = self._trainer
            counts = self._reduce(trainer, train_totals) if trainer is not None else train_totals
            pending = {
                "epoch": self._totals_epoch["train"],
                "counts": {n: c.cpu().tolist() for n, c in counts.items()},
            }
        return {
            "stages": list(self.stages),
            "epochs": {s: list(v) for s, v in self.epochs.items()},
            "history_counts": {
                s: [{n: c.tolist() for n, c in entry.items()} for entry in entries]
                for s, entries in self.history_counts.items()
            },
            "pending_train": pending,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for stage in self.stages:
            self.history[stage], self.history_counts[stage] = [], []
            self.epochs[stage] = list(state_dict["epochs"].get(stage, []))
            for entry in state_dict["history_counts"].get(stage, []):
                counts = {n: np.asarray(c) for n, c in entry.items()}
                self.history_counts[stage].append(counts)
                self.history[stage].append({n: c / c.sum() for n, c in counts.items()})
        pending = state_dict.get("pending_train")
        self._restored_train = pending if "train" in self.stages else None
