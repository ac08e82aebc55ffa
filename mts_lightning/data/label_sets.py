"""Label sets: shared classes that the classes of every corpus map onto, so that a model
trained on one corpus can be tested on another.

A label set lists its shared classes in label order and, for each, the corpus class names
that join it: ``{"neutral": ("neutral",), "happy": ("happy", "joy"), ...}``. The supported
corpora all name their classes in English (``fear``, ``pleasant_surprise``, ``boredom``,
...), so one such table serves every corpus and a manifest alike; a corpus whose names differ
(the synthetic corpus's ``pattern_N``) gets its own table. Clips of a class that joins no
shared class are left out, listed in ``corpus.excluded`` and counted in the run's summary.

Registered sets (:func:`list_label_sets`):

- ``shared4``: neutral, happy, sad, angry, the four classes that all six supported corpora
  share. IEMOCAP's ``excited`` is left out (and RAVDESS's ``calm``).
- ``shared4_excited``: ``shared4`` with IEMOCAP's ``excited`` joining ``happy``, as the usual
  IEMOCAP protocols (and this library's own 4-class IEMOCAP) do.
- ``acted6``: neutral, happy, sad, angry, fearful, disgust: the six that the five acted
  corpora (RAVDESS, CREMA-D, EmoDB, TESS, SAVEE) share.

In every registered set the synthetic corpus's patterns stand in for the shared classes in
order (``pattern_0`` is neutral, ``pattern_1`` happy, ...), so that label sets can be tried
on the embedded corpus. A config may also write a set inline, ``--data.label_set '{neutral:
[neutral, calm], happy: [happy], sad: [sad], angry: [angry]}'``, which applies to every
corpus by name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .corpora import Clip, Corpus, SkippedFile
from .errors import DataError

#: What ``--data.label_set`` accepts: a registered name, or an inline ``{shared: [classes]}``.
LabelSetArg = dict[str, list[str]] | str | None

_LABEL_SETS: dict[str, LabelSet] = {}


@dataclass(frozen=True)
class LabelSet:
    """Shared classes and the corpus classes that join each.

    Args:
        name: the value of ``--data.label_set``.
        sources: shared class -> the corpus class names that join it, in label order.
        corpus_sources: corpus -> its own such table, replacing ``sources`` for that corpus.
        description: one line for listings.

    Raises ``ValueError`` for fewer than two shared classes, a shared class with no corpus
    class, or a corpus class sent to two shared classes.
    """

    name: str
    sources: Mapping[str, tuple[str, ...]]
    corpus_sources: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        for corpus, table in (("", self.sources), *self.corpus_sources.items()):
            _check_table(self.name, corpus, table)
            if list(table) != list(self.sources):
                raise ValueError(
                    f"label set {self.name!r}: the table of {corpus} has the shared classes "
                    f"{', '.join(table)}, expected {', '.join(self.sources)} in that order"
                )

    @property
    def classes(self) -> list[str]:
        """The shared classes, in label order."""
        return list(self.sources)

    def mapping(self, corpus: str) -> dict[str, str]:
        """Corpus class name -> shared class, for ``corpus``."""
        table = self.corpus_sources.get(corpus, self.sources)
        return {own: shared for shared, owns in table.items() for own in owns}

    def describe(self, corpus: str) -> dict[str, Any]:
        """What a checkpoint keeps: the name, the shared classes, the tables and the
        mapping of the corpus trained on (plain types)."""
        return {
            "name": self.name,
            "classes": self.classes,
            "sources": {k: list(v) for k, v in self.sources.items()},
            "corpus_sources": {
                c: {k: list(v) for k, v in t.items()} for c, t in self.corpus_sources.items()
            },
            "corpus": corpus,
            "mapping": self.mapping(corpus),
        }


def _check_table(name: str, corpus: str, table: Mapping[str, Sequence[str]]) -> None:
    where = f"label set {name!r}" + (f" ({corpus})" if corpus else "")
    if len(table) < 2:
        raise ValueError(f"{where}: needs at least 2 shared classes, got {list(table)}")
    owner: dict[str, str] = {}
    for shared, owns in table.items():
        if isinstance(owns, str) or not owns or not all(isinstance(o, str) for o in owns):
            raise ValueError(
                f"{where}: shared class {shared!r} needs a list of corpus class names, got {owns!r}"
            )
        for own in owns:
            if own in owner and owner[own] != shared:
                raise ValueError(
                    f"{where}: class {own!r} is sent to two shared classes, {owner[own]!r} and "
                    f"{shared!r}; expected each corpus class to join at most one"
                )
            owner[own] = shared


def register_label_set(label_set: LabelSet) -> LabelSet:
    """Register ``label_set`` under its name (refused when the name is taken by another)."""
    known = _LABEL_SETS.get(label_set.name)
    if known is not None and known != label_set:
        raise ValueError(f"label set {label_set.name!r} is already registered")
    _LABEL_SETS[label_set.name] = label_set
    return label_set


def list_label_sets() -> list[str]:
    """The registered label set names, sorted."""
    return sorted(_LABEL_SETS)


def get_label_set(value: LabelSetArg | Mapping[str, Any]) -> LabelSet | None:
    """The label set of ``--data.label_set``: a registered name, an inline ``{shared class:
    [corpus classes]}`` mapping (named ``inline``), or None."""
    if value is None:
        return None
    if isinstance(value, str):
        if value not in _LABEL_SETS:
            raise ValueError(
                f"data.label_set: unknown label set {value!r}; known: "
                f"{', '.join(list_label_sets())} (or an inline mapping {{shared class: [corpus "
                "classes]}})"
            )
        return _LABEL_SETS[value]
    if not isinstance(value, Mapping):
        raise ValueError(
            f"data.label_set: a label set name or a mapping {{shared class: [corpus classes]}}, "
            f"got {value!r}"
        )
    table = {}
    for shared, owns in value.items():
        if not isinstance(owns, (list, tuple)):
            raise ValueError(
                f"data.label_set: shared class {shared!r} needs a list of corpus class names, got "
                f"{owns!r}"
            )
        table[str(shared)] = tuple(owns)
    return LabelSet("inline", table)


class RelabelledCorpus(Corpus):
    """A corpus seen through a label set: its clips of mapped classes, labelled with the
    shared classes; audio, durations and cache identities come from the source corpus."""

    def __init__(self, source: Corpus, classes: list[str], pairs: list[tuple[Clip, Clip]]):
        super().__init__(
            source.name,
            classes,
            [new for new, _ in pairs],
            list(source.skipped),
            list(source.excluded),
        )
        self.source = source
        self._source_clip = {new.path: old for new, old in pairs}

    def load_waveform(self, clip: Clip, sample_rate: int, min_samples: int) -> torch.Tensor:
        return self.source.load_waveform(self._source_clip[clip.path], sample_rate, min_samples)

    def identity(self, clip: Clip) -> str:
        return self.source.identity(self._source_clip[clip.path])

    def duration(self, clip: Clip) -> float:
        return self.source.duration(self._source_clip[clip.path])


@dataclass(frozen=True)
class LabelSetReport:
    """How a label set met a corpus: clips kept per shared class, clips left out per class."""

    label_set: str
    corpus: str
    classes: list[str]
    mapping: dict[str, str]
    kept: dict[str, int]
    left_out: dict[str, int]

    def line(self) -> str:
        """One line for logs and the fit summary."""
        kept = sum(self.kept.values())
        counts = ", ".join(f"{c} {self.kept.get(c, 0)}" for c in self.classes)
        text = f"label set {self.label_set}: {kept} clips of {self.corpus} kept ({counts})"
        if self.left_out:
            outside = ", ".join(f"{c} {n}" for c, n in self.left_out.items())
            text += (
                f"; left out {sum(self.left_out.values())} clips of classes outside it ({outside})"
            )
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "label_set": self.label_set,
            "corpus": self.corpus,
            "classes": self.classes,
            "mapping": self.mapping,
            "kept": self.kept,
            "left_out": self.left_out,
        }


def apply_label_set(
    corpus: Corpus, label_set: LabelSet, where: str
) -> tuple[RelabelledCorpus, LabelSetReport]:
    """``corpus`` relabelled with ``label_set``'s shared classes; clips of other classes are
    listed in ``excluded``. Raises :class:`DataError` when no clip is left (``where`` names
    the corpus's folder in the message)."""
    mapping = label_set.mapping(corpus.name)
    classes = label_set.classes
    pairs: list[tuple[Clip, Clip]] = []
    excluded: list[SkippedFile] = []
    for clip in corpus.clips:
        own = corpus.class_names[clip.label]
        shared = mapping.get(own)
        if shared is None:
            excluded.append(
                SkippedFile(clip.path, f"class {own!r} is outside label set {label_set.name}")
            )
        else:
            pairs.append((Clip(clip.path, classes.index(shared), clip.speaker), clip))
    own_counts = Counter(corpus.class_names[c.label] for c in corpus.clips)
    if not pairs:
        raise DataError(
            f"{corpus.name} ({where}) has no clip of a class in label set {label_set.name}: its "
            f"classes are {', '.join(sorted(own_counts))}; expected clips of "
            f"{', '.join(sorted(mapping))} (joining {', '.join(classes)})"
        )
    relabelled = RelabelledCorpus(corpus, classes, pairs)
    relabelled.excluded += excluded
    kept = Counter(classes[new.label] for new, _ in pairs)
    report = LabelSetReport(
        label_set.name,
        corpus.name,
        classes,
        {own: mapping[own] for own in corpus.class_names if own in mapping},
        {c: kept[c] for c in classes if kept[c]},
        {own: n for own, n in sorted(own_counts.items()) if own not in mapping},
    )
    return relabelled, report


def _with_synthetic(name: str, sources: dict[str, tuple[str, ...]], description: str) -> LabelSet:
    patterns = {shared: (f"pattern_{i}",) for i, shared in enumerate(sources)}
    return LabelSet(name, sources, {"synthetic": patterns}, description)


_SHARED4 = {
    "neutral": ("neutral",),
    "happy": ("happy", "happiness", "joy"),
    "sad": ("sad", "sadness"),
    "angry": ("angry", "anger"),
}
register_label_set(
    _with_synthetic("shared4", _SHARED4, "neutral, happy, sad, angry (IEMOCAP's excited left out)")
)
register_label_set(
    _with_synthetic(
        "shared4_excited",
        {**_SHARED4, "happy": (*_SHARED4["happy"], "excited")},
        "neutral, happy, sad, angry with IEMOCAP's excited joining happy",
    )
)
register_label_set(
    _with_synthetic(
        "acted6",
        {
            **_SHARED4,
            "fearful": ("fear", "fearful"),
            "disgust": ("disgust", "disgusted"),
        },
        "neutral, happy, sad, angry, fearful, disgust (the five acted corpora)",
    )
)
