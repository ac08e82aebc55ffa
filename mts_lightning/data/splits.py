"""Train/val/test splits: speaker-independent k-fold, leave-one-speaker-out, the MTS paper's
protocol per corpus, and a seeded stratified random split.

A split is a dict ``{"train": [...], "val": [...], "test": [...]}`` of clip indices.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Literal

from .corpora import Clip

SplitMethod = Literal["speaker_kfold", "loso", "paper", "random"]
SPLIT_METHODS = ("speaker_kfold", "loso", "paper", "random")
SPLIT_NAMES = ("train", "val", "test")
#: Folds of the paper's shifted 70/20/10 speaker window (RAVDESS, EmoDB).
PAPER_FOLDS = 3


def make_split(
    clips: Sequence[Clip],
    method: str,
    fold: int = 0,
    num_folds: int = 5,
    seed: int = 0,
    ratios: Sequence[float] = (0.7, 0.2, 0.1),
    corpus: str = "",
) -> dict[str, list[int]]:
    """Split ``clips`` into train/val/test clip indices.

    - ``speaker_kfold``: speakers (shuffled with ``seed``) in ``num_folds`` groups; fold ``f``
      tests on group ``f``, validates on group ``f + 1`` and trains on the rest, so the test
      groups of all folds cover every speaker once.
    - ``loso``: leave one speaker out: fold ``f`` tests on speaker ``f`` (sorted order) and
      validates on the next one.
    - ``paper``: the MTS paper's protocol: IEMOCAP by session (3 train / 1 val / 1 test, test
      session = ``fold``), TESS by halving each speaker's files per class, and every other
      corpus by a window of ~70/20/10 % of the sorted speakers shifted per fold (3 folds).
    - ``random``: stratified by class with ``seed`` and ``ratios``; not speaker-independent.

    Raises ``ValueError`` when the split cannot be made (unknown method, fold out of range, too
    few speakers, missing speaker information).
    """
    if method not in SPLIT_METHODS:
        raise ValueError(f"split must be one of {', '.join(SPLIT_METHODS)}, got {method!r}")
    if method == "random":
        return _random_split(clips, seed, ratios)
    if method == "paper" and corpus == "tess":
        return _halving_split(clips, fold, seed)
    speakers = _speakers(clips, method)
    if method == "paper" and corpus == "iemocap":
        groups = _group_sessions(speakers)
        _check_fold(fold, len(groups), "paper (IEMOCAP sessions)")
        test, val = groups[fold], groups[(fold + 1) % len(groups)]
    elif method == "paper":
        test, val = _paper_window(speakers, fold)
    else:
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
        _check_fold(fold, num_groups, method)
        order = list(speakers)
        if method == "speaker_kfold":
            random.Random(seed).shuffle(order)
        groups = [order[i::num_groups] for i in range(num_groups)]
        test, val = groups[fold], groups[(fold + 1) % num_groups]
    return _assign(clips, set(test), set(val))


def split_speakers(clips: Sequence[Clip], split: dict[str, list[int]]) -> dict[str, list[str]]:
    """Sorted speakers present in each part of ``split``."""
    return {
        name: sorted({clips[i].speaker for i in split[name] if clips[i].speaker is not None})
        for name in SPLIT_NAMES
    }


def _speakers(clips: Sequence[Clip], method: str) -> list[str]:
    if any(c.speaker is None for c in clips):
        raise ValueError(
            f"split {method!r} is speaker-independent but some clips have no speaker (a manifest "
            "without a 'speaker' column?); add speakers or use split='random'"
        )
    speakers = sorted({c.speaker for c in clips})
    if len(speakers) < 3:
        raise ValueError(
            f"split {method!r} needs at least 3 speakers (train, val and test), but the corpus "
            f"has {len(speakers)} ({', '.join(speakers)}); use split='random'"
            + (" or split='paper'" if method != "paper" else "")
        )
    return speakers


def _check_fold(fold: int, num_folds: int, method: str) -> None:
    if not 0 <= fold < num_folds:
        raise ValueError(f"fold must be in [0, {num_folds - 1}] for split {method!r}, got {fold}")


def _assign(clips: Sequence[Clip], test: set, val: set) -> dict[str, list[int]]:
    split: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    for i, clip in enumerate(clips):
        name = "test" if clip.speaker in test else "val" if clip.speaker in val else "train"
        split[name].append(i)
    return split


def _group_sessions(speakers: list[str]) -> list[list[str]]:
    sessions: dict[str, list[str]] = defaultdict(list)
    for speaker in speakers:
        sessions[speaker[:5]].append(speaker)
    if len(sessions) < 3:
        raise ValueError(
            f"split 'paper' for IEMOCAP needs at least 3 sessions, found {len(sessions)} "
            f"({', '.join(sorted(sessions))})"
        )
    return [sessions[name] for name in sorted(sessions)]


def _paper_window(speakers: list[str], fold: int) -> tuple[list[str], list[str]]:
    """Test/val speakers of the paper's ~70/20/10 window, shifted by a third per fold."""
    _check_fold(fold, PAPER_FOLDS, "paper")
    n = len(speakers)
    n_test = max(1, round(0.1 * n))
    n_val = max(1, round(0.2 * n))
    shift = fold * n // PAPER_FOLDS
    order = speakers[shift:] + speakers[:shift]
    return order[n - n_test :], order[n - n_test - n_val : n - n_test]


def _halving_split(clips: Sequence[Clip], fold: int, seed: int) -> dict[str, list[int]]:
    """TESS: per speaker and class, one half of the files trains, the other half is divided
    between val and test; fold 1 swaps the halves."""
    _check_fold(fold, 2, "paper (TESS halves)")
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, clip in enumerate(clips):
        groups[(clip.speaker, clip.label)].append(i)
    split: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    for key in sorted(groups, key=str):
        members = groups[key]
        random.Random(f"{seed}-{key}").shuffle(members)
        half = len(members) // 2
        train, held = (
            (members[:half], members[half:]) if fold == 0 else (members[half:], members[:half])
        )
        split["train"] += train
        split["val"] += held[: len(held) // 2]
        split["test"] += held[len(held) // 2 :]
    return {name: sorted(idx) for name, idx in split.items()}


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
