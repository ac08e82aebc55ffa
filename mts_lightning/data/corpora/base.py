"""What every corpus is made of: clips, the corpus classes, and the scan that collects clips.

A scanner walks a root folder recursively, parses the official naming of its corpus (the table
in the corpora guide, docs/corpora.md), and returns a :class:`FileCorpus`: one :class:`Clip` (file, label index,
speaker) per usable file, in a stable (sorted) order. Files that break the convention raise one
:class:`DataError` naming the first few and how many more, or, with ``skip_bad_files=True``,
are listed in ``corpus.skipped`` with the reason. Files left out by design (RAVDESS song/video
files, IEMOCAP emotions outside the four classes, duplicate copies with the same label, hidden
files) are listed in ``corpus.excluded``; copies of one recording with two different labels
are refused.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..audio import BadAudioError, audio_duration, load_audio, walk_audio
from ..errors import DataError, MissingFilesError, name_files


@dataclass(frozen=True)
class Clip:
    """One utterance: its source (a file path, or a synthetic id), class index and speaker."""

    path: str
    label: int
    speaker: str | None


@dataclass(frozen=True)
class SkippedFile:
    """A file left out of a corpus, and why."""

    path: str
    reason: str


@dataclass
class Corpus:
    """A labelled set of clips; subclasses say how a clip becomes a waveform."""

    name: str
    class_names: list[str]
    clips: list[Clip]
    skipped: list[SkippedFile] = field(default_factory=list)
    excluded: list[SkippedFile] = field(default_factory=list)

    @property
    def speakers(self) -> list[str]:
        """Sorted distinct speakers (empty when the corpus has no speaker information)."""
        return sorted({c.speaker for c in self.clips if c.speaker is not None})

    def load_waveform(self, clip: Clip, sample_rate: int, min_samples: int) -> torch.Tensor:
        """The clip's mono waveform at ``sample_rate``; raises :class:`BadAudioError`."""
        raise NotImplementedError

    def excluded_summary(self) -> str:
        """How many files were left out by design, and why, in one line."""
        reasons = Counter(entry.reason for entry in self.excluded)
        summary = "; ".join(f"{n} x {reason}" for reason, n in sorted(reasons.items()))
        return f"{self.name}: left out {len(self.excluded)} files by design: {summary}"

    def longest_usable(
        self,
        sample_rate: int,
        min_samples: int,
        on_bad: Callable[[list[SkippedFile]], None],
    ) -> tuple[float, Clip, float] | None:
        """``(seconds, clip, median seconds)`` of the longest clip that can be used, or None.

        Headers give every clip's length; from the longest down, clips are read in full until
        one is usable. Bad files found on the way go to ``on_bad`` (which may raise).
        """
        lengths: list[tuple[float, Clip]] = []
        bad = []
        for clip in self.clips:
            try:
                lengths.append((self.duration(clip), clip))
            except BadAudioError as err:
                bad.append(SkippedFile(clip.path, err.reason))
        on_bad(bad)
        for _, clip in sorted(lengths, key=lambda entry: -entry[0]):
            try:
                waveform = self.load_waveform(clip, sample_rate, min_samples)
            except BadAudioError as err:
                on_bad([SkippedFile(clip.path, err.reason)])
                continue
            median = statistics.median(seconds for seconds, _ in lengths)
            return waveform.numel() / sample_rate, clip, median
        return None

    def identity(self, clip: Clip) -> str:
        """A string that changes whenever the clip's audio may change (cache key material)."""
        raise NotImplementedError

    def duration(self, clip: Clip) -> float:
        """Clip duration in seconds, cheaply (from the header)."""
        raise NotImplementedError


@dataclass
class FileCorpus(Corpus):
    """A corpus of audio files on disk."""

    def load_waveform(self, clip: Clip, sample_rate: int, min_samples: int) -> torch.Tensor:
        return load_audio(clip.path, sample_rate, min_samples)

    def identity(self, clip: Clip) -> str:
        try:
            stat = Path(clip.path).stat()
        except OSError:
            return f"file:{clip.path}:missing"
        return f"file:{clip.path}:{stat.st_size}:{stat.st_mtime_ns}"

    def duration(self, clip: Clip) -> float:
        return audio_duration(clip.path)


class CorpusScan:
    """Collects clips while a root folder is parsed, applying the bad-file policy.

    Bad files are collected either way: without ``skip_bad_files`` :meth:`finish` raises one
    error naming the first few and how many more, with it they are listed in
    ``corpus.skipped``. A recording found twice (same ``uid``) is kept once when both copies
    carry the same label, and refused when they disagree.
    """

    def __init__(self, name: str, display: str, skip_bad_files: bool) -> None:
        self.name = name
        self.display = display
        self.skip_bad_files = skip_bad_files
        self.paths: list[Path] = []
        self.labels: list[str] = []
        self.speakers: list[str | None] = []
        self.skipped: list[SkippedFile] = []
        self.excluded: list[SkippedFile] = []
        self._missing: set[str] = set()
        self._seen: dict[str, tuple[Path, str, str]] = {}

    def bad(self, path: Path, reason: str, missing: bool = False) -> None:
        """Record a file that cannot be used (``missing``: listed but not on disk)."""
        self.skipped.append(SkippedFile(str(path), reason))
        if missing:
            self._missing.add(str(path))

    def exclude(self, path: Path, reason: str) -> None:
        """Record a file left out by design (reported, not an error)."""
        self.excluded.append(SkippedFile(str(path), reason))

    def add(
        self, path: Path, label: str, speaker: str | None, uid: str, where: str | None = None
    ) -> None:
        """Add a clip. ``uid`` identifies the recording and ``where`` the place that labels
        it (a manifest line; by default the file itself), for the messages about copies."""
        where = where or str(path)
        if uid in self._seen:
            first_path, first_label, first_where = self._seen[uid]
            if first_label != label:
                raise DataError(
                    f"{self.display}: {path} is labelled twice with different labels: "
                    f"{first_label!r} ({first_where}) and {label!r} ({where}); give each clip "
                    "one label"
                )
            labelled_in = f" ({first_where})" if first_where != str(first_path) else ""
            self.exclude(path, f"duplicate of {first_path}{labelled_in}, same label")
            return
        self._seen[uid] = (path, label, where)
        self.paths.append(path)
        self.labels.append(label)
        self.speakers.append(speaker)

    def finish(self, root: Path, example: str, classes: Sequence[str] | None) -> FileCorpus:
        """Build the corpus: its classes are ``classes`` (the corpus's fixed list) or, when
        None, the sorted labels of the kept clips. Refuses bad files unless skipping, and a
        corpus without any usable clip."""
        if self.skipped and not self.skip_bad_files:
            problems = [(s.path, s.reason) for s in self.skipped]
            error = MissingFilesError if self._missing >= {p for p, _ in problems} else DataError
            raise error(
                f"{self.display}: {len(problems)} bad file(s): {name_files(problems)} "
                "(set skip_bad_files=True to skip such files)"
            )
        if not self.paths:
            detail = f" ({len(self.skipped)} bad files skipped)" if self.skipped else ""
            raise FileNotFoundError(
                f"{self.display}: no usable audio found under '{root}'{detail}; expected files "
                f"named like {example}, searched recursively"
            )
        names = list(classes) if classes is not None else sorted(set(self.labels))
        clips = [
            Clip(str(path), names.index(label), speaker)
            for path, label, speaker in zip(self.paths, self.labels, self.speakers, strict=True)
        ]
        return FileCorpus(self.name, names, clips, self.skipped, self.excluded)


def check_root(root: str | Path | None, display: str, example: str) -> Path:
    """Resolve ``root``, raising a clear error when it is unset or missing."""
    if root is None:
        raise ValueError(f"{display} needs `root`: the folder holding files like {example}")
    path = Path(root).expanduser().resolve()
    if not path.exists():
        raise FileNotFoundError(
            f"{display} root '{path}' does not exist; point `root` at the extracted corpus "
            f"(files named like {example})"
        )
    return path


def audio_files(root: Path, scan: CorpusScan) -> list[Path]:
    """Audio files under ``root`` (see :func:`walk_audio`); hidden and macOS metadata files
    are recorded in ``scan`` as left out by design."""
    files, hidden = walk_audio(root)
    for path in hidden:
        scan.exclude(path, "hidden or macOS metadata file")
    return files
