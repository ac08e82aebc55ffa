"""Figures shared by :class:`~mts_lightning.EmotionClassifier` and the callbacks.

Every function builds a Matplotlib figure with the object-oriented API (no pyplot state),
so callers close nothing but what they get back, and nothing leaks between epochs.
``log_figure`` sends a figure to each logger of a trainer that can take one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import lightning.pytorch as pl
    from matplotlib.figure import Figure


def new_figure(width: float, height: float) -> Figure:
    """A figure detached from pyplot (Agg canvas), so it never opens a window or leaks."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def confusion_matrix_figure(
    matrix: np.ndarray, class_names: Sequence[str], title: str = "Confusion matrix"
) -> Figure:
    """Confusion matrix (rows: true class, columns: predicted), counts with row fractions."""
    matrix = np.asarray(matrix)
    n = len(class_names)
    if matrix.shape != (n, n):
        raise ValueError(f"confusion matrix of shape {matrix.shape} does not match {n} class names")
    totals = matrix.sum(axis=1, keepdims=True)
    fractions = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    size = max(4.0, 0.6 * n + 2.0)
    fig = new_figure(size + 1.0, size)
    ax = fig.add_subplot()
    image = ax.imshow(fractions, vmin=0.0, vmax=1.0, cmap="Blues")
    fig.colorbar(image, ax=ax, label="fraction of true class")
    ax.set_xticks(range(n), labels=class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), labels=class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(n):
        for j in range(n):
            color = "white" if fractions[i, j] > 0.5 else "black"
            ax.text(j, i, f"{int(matrix[i, j])}", ha="center", va="center", color=color)
    return fig


def stretch_usage_bar_figure(
    usage: Mapping[str, Sequence[float]], branch_labels: Mapping[str, Sequence[str]], title: str
) -> Figure:
    """Grouped bars: for each MTS layer, the fraction of output elements each branch won."""
    layers = list(usage)
    fig = new_figure(max(4.0, 1.2 * len(layers) + 2.0), 3.5)
    ax = fig.add_subplot()
    width = 0.8 / max(len(v) for v in usage.values()) if layers else 0.8
    for i, layer in enumerate(layers):
        for j, (value, label) in enumerate(zip(usage[layer], branch_labels[layer], strict=True)):
            bar = ax.bar(i + (j + 0.5) * width - 0.4, value, width, color=f"C{j}")
            ax.bar_label(bar, labels=[label], fontsize=7)
    ax.set_xticks(range(len(layers)), labels=layers, rotation=30, ha="right")
    ax.set_ylim(0.0, 1.05)
    ax.set_ylabel("fraction of elements won")
    ax.set_title(title)
    return fig


def stretch_usage_history_figure(
    history: Mapping[str, Sequence[Mapping[str, Sequence[float]]]],
    epochs: Mapping[str, Sequence[int]],
    branch_labels: Mapping[str, Sequence[str]],
) -> Figure:
    """One panel per layer: each branch's fraction across epochs, one line style per stage."""
    from matplotlib.ticker import MaxNLocator

    layers = list(branch_labels)
    fig = new_figure(6.0, 2.6 * max(1, len(layers)))
    axes = fig.subplots(max(1, len(layers)), 1, squeeze=False)[:, 0]
    styles = {"train": "-", "val": "--", "test": ":"}
    for ax, layer in zip(axes, layers, strict=False):
        for stage, entries in history.items():
            points = [
                (e, entry[layer])
                for e, entry in zip(epochs[stage], entries, strict=True)
                if layer in entry
            ]
            if not points:
                continue
            xs = [p[0] for p in points]
            values = np.asarray([p[1] for p in points])
            for j, label in enumerate(branch_labels[layer]):
                ax.plot(
                    xs,
                    values[:, j],
                    styles.get(stage, "-"),
                    marker="o",
                    color=f"C{j}",
                    label=f"{stage} {label}",
                )
        ax.set_title(layer)
        ax.set_ylim(0.0, 1.05)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("fraction won")
        ax.legend(fontsize=7, ncols=2)
    return fig


def timeline_figure(
    starts: Sequence[float],
    ends: Sequence[float],
    probabilities: Mapping[str, Sequence[float]],
    title: str,
) -> Figure:
    """Class probabilities of a long recording over time: one line per class, each window
    drawn at its centre."""
    centres = (np.asarray(starts, dtype=float) + np.asarray(ends, dtype=float)) / 2
    fig = new_figure(9.0, 3.5)
    ax = fig.add_subplot(1, 1, 1)
    for name, values in probabilities.items():
        ax.plot(centres, values, label=name, linewidth=1.2)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("probability")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncols=min(len(probabilities), 4), loc="upper right")
    return fig


def log_figure(trainer: pl.Trainer, tag: str, fig: Figure) -> None:
    """Send ``fig`` to every logger that takes figures: TensorBoard and W&B.

    Call on rank zero only. Loggers that cannot show a figure (CSV) are skipped.
    """
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(tag, fig, global_step=trainer.global_step, close=False)
        elif isinstance(logger, WandbLogger):
            logger.log_image(key=tag, images=[fig], step=trainer.global_step)


def save_figure(fig: Figure, path: str | os.PathLike) -> None:
    """Write ``fig`` as a PNG, creating the folder."""
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    fig.savefig(path, dpi=100)
