"""What the loaders serve: items of cached features made model input (:class:`ModelInput`).

Training items are single spectrograms (one per clip, or one per segment of a clip cut into
segments). For scoring, a clip cut into segments is one item holding all its segments
(:class:`SegmentedClipDataset`), batched by :func:`collate_segments` with the index of each
segment's clip, so that a model can average its segment logits into one score per clip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from .augment import SpecAugment
from .frontend import ModelInput, segment_starts


@dataclass(frozen=True)
class Item:
    """One dataset item: a cached feature file, its target, and the first frame to use.

    ``retimed`` holds the same clip's features at other speaking rates, ``(feature file,
    tempo)`` pairs (tempo 1.0 for ``feature`` itself when it takes part); when given, every
    read draws one of them instead of ``feature`` (waveform rate augmentation).
    """

    feature: str
    target: int | str
    start: int = 0
    retimed: tuple[tuple[str, float], ...] = ()


def class_weights(labels: Sequence[int], num_classes: int) -> torch.Tensor:
    """``(num_classes,)`` inverse class frequency of ``labels``, normalised to mean 1 over the
    classes present (absent classes weigh 0)."""
    counts = torch.bincount(torch.tensor(labels, dtype=torch.long), minlength=num_classes)
    weights = torch.where(counts > 0, 1.0 / counts.clamp_min(1).float(), torch.zeros(()))
    return weights / weights[counts > 0].mean()


def make_items(
    features: Sequence[tuple[str, int | str]],
    frames: int,
    segment_overlap: float | None = None,
    retimed: Sequence[tuple[tuple[str, float], ...]] | None = None,
) -> list[Item]:
    """One item per ``(cached feature file, target)``; with ``segment_overlap``, one per
    segment of ``frames`` frames (:func:`segment_starts`) instead. ``retimed``, one entry per
    feature file, gives each item its :attr:`Item.retimed` versions."""
    versions = retimed if retimed is not None else [()] * len(features)
    if len(versions) != len(features):
        raise ValueError(f"retimed has {len(versions)} entries for {len(features)} features")
    if segment_overlap is None:
        return [
            Item(path, target, 0, v) for (path, target), v in zip(features, versions, strict=True)
        ]
    items = []
    for (path, target), v in zip(features, versions, strict=True):
        length = np.load(path, mmap_mode="r", allow_pickle=False).shape[0]
        starts = segment_starts(length, frames, segment_overlap)
        items += [Item(path, target, s, v) for s in starts]
    return items


class SpectrogramDataset(Dataset):
    """Items of ``(spectrogram (1, time, freq), target)`` read from the feature cache.

    Each item is normalised and cut to the model's input from its start (a random start when
    ``random_crop``), filled as the model input's ``pad_mode`` says (:meth:`ModelInput.cut`),
    then augmented when ``augment`` is given. An item with
    :attr:`Item.retimed` versions is read at one of them, drawn uniformly at every read; its
    start frame is moved to the same moment of the re-timed clip.
    """

    def __init__(
        self,
        items: Sequence[Item],
        model_input: ModelInput,
        augment: SpecAugment | None = None,
        random_crop: bool = False,
    ) -> None:
        self.items = list(items)
        self.model_input = model_input
        self.augment = augment
        self.random_crop = random_crop

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int | str]:
        item = self.items[index]
        feature, start = item.feature, item.start
        if item.retimed:
            feature, tempo = item.retimed[int(torch.randint(len(item.retimed), ()))]
            start = round(start / tempo)
        spec = self.model_input.normalise(torch.from_numpy(np.load(feature, allow_pickle=False)))
        frames = self.model_input.frames
        start = min(start, max(0, spec.shape[0] - frames))
        if self.random_crop and spec.shape[0] > frames:
            start = int(torch.randint(0, spec.shape[0] - frames + 1, ()))
        spec = self.model_input.cut(spec, start)
        if self.augment is not None:
            spec = self.augment(spec, self.model_input.pad_mode)
        return spec.unsqueeze(0), item.target


class SegmentedClipDataset(SpectrogramDataset):
    """Whole clips cut into overlapping segments: item ``i`` is ``(segments (n, 1, frames,
    freq), target)`` with every segment of clip ``i`` (:meth:`ModelInput.segments`, ``n >=
    1``).

    For validation, test and prediction of corpora cut into segments: a clip is scored once,
    from all its segments, and a sampler (a distributed one too) splits clips, not segments.
    Batch the items with :func:`collate_segments`.
    """

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int | str]:
        item = self.items[index]
        features = torch.from_numpy(np.load(item.feature, allow_pickle=False))
        return self.model_input(features), item.target


def collate_segments(
    batch: Sequence[tuple[torch.Tensor, int | str]],
) -> tuple[torch.Tensor, torch.Tensor | list[str], torch.Tensor]:
    """Batch :class:`SegmentedClipDataset` items: ``(spectrograms (S, 1, frames, freq),
    targets, clip_index (S,))`` where ``S`` counts the segments of the ``B`` clips, targets are
    ``(B,)`` labels (or the ``B`` paths of predict items) and ``clip_index[s]`` is the clip
    (``0..B-1``) of segment ``s``."""
    segments = [item[0] for item in batch]
    clip_index = torch.cat(
        [torch.full((len(s),), i, dtype=torch.long) for i, s in enumerate(segments)]
    )
    targets = default_collate([item[1] for item in batch])
    return torch.cat(segments), targets, clip_index
