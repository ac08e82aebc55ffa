"""The MTS paper's splits, one function per protocol, chosen by each corpus's registration.

A split is a dict ``{"train": [...], "val": [...], "test": [...]}`` of clip indices. The helpers
shared with the other split methods (speaker checks, fold checks, assignment by speaker) live
here too, so that corpus modules can build protocols without importing the splits module.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence

from .base import Clip
from .registry import PaperProtocol

SPLIT_NAMES = ("train", "val", "test")
#: Folds of the paper's shifted 70/20/10 speaker window (RAVDESS, EmoDB).
PAPER_FOLDS = 3


def corpus_speakers(clips: Sequence[Clip], method: str) -> list[str]:
    """Sorted speakers of ``clips``; refuses clips without a speaker and fewer than 3."""
    if any(c.speaker is None for c in clips):
        raise ValueError(
            f"split {method!r} is speaker-independent but some clips have no speaker (a manifest "
            "without a 'speaker' column?); add speakers or use split='random'"
        )
    speakers = sorted({c.speaker for c in clips if c.speaker is not None})
    if len(speakers) < 3:
        raise ValueError(
            f"split {method!r} needs at least 3 speakers (train, val and test), but the corpus "
            f"has {len(speakers)} ({', '.join(speakers)}); use split='random'"
            + (" or split='paper'" if method != "paper" else "")
        )
    return speakers


def check_fold(fold: int, num_folds: int, method: str) -> None:
    if not 0 <= fold < num_folds:
        raise ValueError(f"fold must be in [0, {num_folds - 1}] for split {method!r}, got {fold}")


def assign(
    clips: Sequence[Clip], test: Collection[str], val: Collection[str]
) -> dict[str, list[int]]:
    """Clips of the ``test`` speakers test, of the ``val`` speakers validate, the rest train."""
    test, val = set(test), set(val)
    split: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    for i, clip in enumerate(clips):
        name = "test" if clip.speaker in test else "val" if clip.speaker in val else "train"
        split[name].append(i)
    return split


def speaker_window(clips: Sequence[Clip], fold: int, seed: int) -> dict[str, list[int]]:
    """A window of ~70/20/10 % of the sorted speakers, shifted by a third per fold (3 folds)."""
    speakers = corpus_speakers(clips, "paper")
    check_fold(fold, PAPER_FOLDS, "paper")
    n = len(speakers)
    n_test = max(1, round(0.1 * n))
    n_val = max(1, round(0.2 * n))
    shift = fold * n // PAPER_FOLDS
    order = speakers[shift:] + speakers[:shift]
    return assign(clips, order[n - n_test :], order[n - n_test - n_val : n - n_test])


def speaker_groups(group_of: Callable[[str], str], what: str) -> PaperProtocol:
    """Speakers grouped by ``group_of`` (e.g. IEMOCAP sessions); fold ``f`` tests on group
    ``f`` and validates on the next one (sorted), the others train."""

    def protocol(clips: Sequence[Clip], fold: int, seed: int) -> dict[str, list[int]]:
        groups: dict[str, list[str]] = defaultdict(list)
        for speaker in corpus_speakers(clips, "paper"):
            groups[group_of(speaker)].append(speaker)
        if len(groups) < 3:
            raise ValueError(
                f"split 'paper' needs at least 3 {what}, found {len(groups)} "
                f"({', '.join(sorted(groups))})"
            )
        order = [groups[name] for name in sorted(groups)]
        check_fold(fold, len(order), f"paper ({what})")
        return assign(clips, order[fold], order[(fold + 1) % len(order)])

    return protocol


def speaker_halves(clips: Sequence[Clip], fold: int, seed: int) -> dict[str, list[int]]:
    """Per speaker and class, one half of the files trains, the other half is divided between
    val and test; fold 1 swaps the halves (TESS: 2 speakers)."""
    check_fold(fold, 2, "paper (halves)")
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
