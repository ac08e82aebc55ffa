"""What the loaders serve: items of cached features, normalised with the training statistics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from .augment import SpecAugment
from .features import fix_length, segment_starts

#: Floor of the per-bin standard deviation used for normalisation.
MIN_STD = 1e-5


class Normalizer:
    """Per-frequency-bin mean and standard deviation of the training split.

    One instance is shared by all datasets of a datamodule and read at every item, so
    statistics restored from a checkpoint (after ``setup``) are the ones used.
    """

    def __init__(self) -> None:
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    @property
    def ready(self) -> bool:
        return self.mean is not None

    def set(self, mean: torch.Tensor | np.ndarray, std: torch.Tensor | np.ndarray) -> None:
        self.mean = torch.as_tensor(mean, dtype=torch.float32).clone()
        self.std = torch.as_tensor(std, dtype=torch.float32).clamp_min(MIN_STD)

    def __call__(self, spec: torch.Tensor) -> torch.Tensor:
        if self.mean is None or self.std is None:
            raise RuntimeError(
                "normalisation statistics are not set (no training split or checkpoint)"
            )
        return (spec - self.mean) / self.std


@dataclass(frozen=True)
class Item:
    """One dataset item: a cached feature file, its target, and the first frame to use."""

    feature: str
    target: int | str
    start: int = 0


def class_weights(labels: Sequence[int], num_classes: int) -> torch.Tensor:
    """``(num_classes,)`` inverse class frequency of ``labels``, normalised to mean 1 over the
    classes present (absent classes weigh 0)."""
    counts = torch.bincount(torch.tensor(labels, dtype=torch.long), minlength=num_classes)
    weights = torch.where(counts > 0, 1.0 / counts.clamp_min(1).float(), torch.zeros(()))
    return weights / weights[counts > 0].mean()


def make_items(
    features: Sequence[tuple[str, int | str]], frames: int, segment_overlap: float | None = None
) -> list[Item]:
    """One item per ``(cached feature file, target)``; with ``segment_overlap``, one per
    segment of ``frames`` frames (:func:`segment_starts`) instead."""
    if segment_overlap is None:
        return [Item(path, target) for path, target in features]
    items = []
    for path, target in features:
        length = np.load(path, mmap_mode="r", allow_pickle=False).shape[0]
        items += [Item(path, target, s) for s in segment_starts(length, frames, segment_overlap)]
    return items


class SpectrogramDataset(Dataset):
    """Items of ``(spectrogram (1, time, freq), target)`` read from the feature cache.

    Each item is normalised, cut to ``frames`` frames from its start (a random start when
    ``random_crop``), zero-padded, and augmented when ``augment`` is given.
    """

    def __init__(
        self,
        items: Sequence[Item],
        normalizer: Normalizer,
        frames: int,
        augment: SpecAugment | None = None,
        random_crop: bool = False,
    ) -> None:
        self.items = list(items)
        self.normalizer = normalizer
        self.frames = frames
        self.augment = augment
        self.random_crop = random_crop

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int | str]:
        item = self.items[index]
        spec = self.normalizer(torch.from_numpy(np.load(item.feature, allow_pickle=False)))
        start = item.start
        if self.random_crop and spec.shape[0] > self.frames:
            start = int(torch.randint(0, spec.shape[0] - self.frames + 1, ()))
        spec = fix_length(spec, self.frames, start)
        if self.augment is not None:
            spec = self.augment(spec)
        return spec.unsqueeze(0), item.target
