"""Train/val/test splits: speaker-independent k-fold, leave-one-speaker-out, the MTS paper's
protocol of the corpus (from its registration), and a seeded stratified random split.

A split is a dict ``{"train": [...], "val": [...], "test": [...]}`` of clip indices.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Literal

from .corpora import Clip, get_corpus
from .corpora.protocols import SPLIT_NAMES, assign, check_fold, corpus_speakers, speaker_window

SplitMethod = Literal["speaker_kfold", "loso", "paper", "random"]
#: The names ``split`` takes, in the order the documentation lists them.
SPLIT_METHODS = ("speaker_kfold", "loso", "paper", "random")


def make_split(
    clips: Sequence[Clip],
    method: str,
    fold: int = 0,
    num_folds: int = 5,
    seed: int = 0,
    ratios: Sequence[float] = (0.7, 0.2, 0.1),
    corpus: str = "",
    train_speaker_fraction: float = 1.0,
) -> dict[str, list[int]]:
    """Split ``clips`` into train/val/test clip indices.

    - ``speaker_kfold``: speakers (shuffled with ``seed``) in ``num_folds`` groups; fold ``f``
      tests on group ``f``, validates on group ``f + 1`` and trains on the rest, so the test
      groups of all folds cover every speaker once.
    - ``loso``: leave one speaker out: fold ``f`` tests on speaker ``f`` (sorted order) and
      validates on the next one.
    - ``paper``: the MTS paper's protocol, registered with the ``corpus``
      (:class:`CorpusSpec`'s ``paper_protocol``: IEMOCAP by session, TESS by halving each
      speaker's files, the others by a window of ~70/20/10 % of the sorted speakers shifted
      per fold); the speaker window when no corpus is named.
    - ``random``: stratified by class with ``seed`` and ``ratios``; not speaker-independent.

    ``train_speaker_fraction`` below 1 then trains on that fraction of the training speakers
    only (:func:`keep_train_speakers`); validation and test are unchanged.

    Raises ``ValueError`` when the split cannot be made (unknown method, fold out of range, too
    few speakers, missing speaker information).
    """
    if method not in SPLIT_METHODS:
        raise ValueError(f"split must be one of {', '.join(SPLIT_METHODS)}, got {method!r}")
    check_fraction(train_speaker_fraction)
    split = _split(clips, method, fold, num_folds, seed, ratios, corpus)
    if train_speaker_fraction < 1.0:
        split = keep_train_speakers(clips, split, train_speaker_fraction, seed)
    return split


def check_fraction(fraction: float) -> float:
    """``train_speaker_fraction``, checked: a number in ``(0, 1]``."""
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, (int, float))
        or not 0 < fraction <= 1
    ):
        raise ValueError(f"train_speaker_fraction must be in (0, 1], got {fraction!r}")
    return float(fraction)


def keep_train_speakers(
    clips: Sequence[Clip], split: dict[str, list[int]], fraction: float, seed: int
) -> dict[str, list[int]]:
    """``split`` with the training part cut to ``round(fraction * n)`` (at least 1) of its
    ``n`` speakers, all their clips. The training speakers are shuffled with ``seed`` and the
    first ones kept, so with one seed a smaller fraction keeps a subset of a larger one's
    speakers (a quarter within the half). Raises ``ValueError`` when a training clip has no
    speaker."""
    check_fraction(fraction)
    train = split["train"]
    if any(clips[i].speaker is None for i in train):
        raise ValueError(
            "train_speaker_fraction needs the speaker of every training clip; this corpus "
            "has clips without one"
        )
    speakers = sorted({clips[i].speaker for i in train})
    random.Random(seed).shuffle(speakers)
    kept = set(speakers[: max(1, round(fraction * len(speakers)))])
    return {**split, "train": [i for i in train if clips[i].speaker in kept]}


def _split(
    clips: Sequence[Clip],
    method: str,
    fold: int,
    num_folds: int,
    seed: int,
    ratios: Sequence[float],
    corpus: str,
) -> dict[str, list[int]]:
    if method == "random":
        return _random_split(clips, seed, ratios)
    if method == "paper":
        protocol = get_corpus(corpus).paper_protocol if corpus else speaker_window
        return protocol(clips, fold, seed)
    speakers = corpus_speakers(clips, method)
    num_groups = len(speakers) if method == "loso" else num_folds
    if num_groups < 3:
        raise ValueError(
            f"split {method!r} needs num_folds >= 3 (train, val and test), got {num_groups}"
        )
    if len(speakers) < num_groups:
        raise ValueError(
            f"split {method!r} with {num_groups} folds needs at least {num_groups} speakers, "
            f"but the corpus has {len(speakers)} ({', '.join(speakers)}); use fewer folds, "
            "split='paper' or split='random'"
        )
    check_fold(fold, num_groups, method)
    order = list(speakers)
    if method == "speaker_kfold":
        random.Random(seed).shuffle(order)
    groups = [order[i::num_groups] for i in range(num_groups)]
    return assign(clips, groups[fold], groups[(fold + 1) % num_groups])


def split_speakers(clips: Sequence[Clip], split: dict[str, list[int]]) -> dict[str, list[str]]:
    """Sorted speakers present in each part of ``split``."""
    return {
        name: sorted({clips[i].speaker for i in split[name] if clips[i].speaker is not None})
        for name in SPLIT_NAMES
    }


def _random_split(
    clips: Sequence[Clip], seed: int, ratios: Sequence[float]
) -> dict[str, list[int]]:
    if len(ratios) != 3 or any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise ValueError(
            f"split_ratios must be three non-negative train/val/test ratios, got {tuple(ratios)}"
        )
    total = sum(ratios)
    by_label: dict[int, list[int]] = defaultdict(list)
    for i, clip in enumerate(clips):
        by_label[clip.label].append(i)
    rng = random.Random(seed)
    split: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    for label in sorted(by_label):
        members = by_label[label]
        rng.shuffle(members)
        n_train = round(len(members) * ratios[0] / total)
        n_val = round(len(members) * ratios[1] / total)
        split["train"] += members[:n_train]
        split["val"] += members[n_train : n_train + n_val]
        split["test"] += members[n_train + n_val :]
    return {name: sorted(idx) for name, idx in split.items()}
