"""Speech emotion corpora read from a local folder, labelled from their official file names.

Each ``scan_*`` function walks a root folder recursively, parses the official naming of the
corpus (the table in the README), and returns a :class:`FileCorpus`: one :class:`Clip`
(file, label index, speaker) per usable file, in a stable (sorted) order, with the class names
in the corpus's fixed order. Files that break the convention raise one :class:`DataError`
naming the first few and how many more, or, with ``skip_bad_files=True``, are listed in
``corpus.skipped`` with the reason. Files left out by design (RAVDESS song/video files, IEMOCAP
emotions outside the four classes, duplicate copies with the same label, hidden files) are
listed in ``corpus.excluded``; copies of one recording with two different labels are refused.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .audio import AUDIO_EXTENSIONS, audio_duration, is_audio_file, load_audio
from .errors import DataError, MissingFilesError, name_files

CORPUS_NAMES = ("synthetic", "ravdess", "crema_d", "emodb", "tess", "savee", "iemocap", "manifest")

RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fear",
    "07": "disgust",
    "08": "surprise",
}
CREMA_D_EMOTIONS = {
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
EMODB_EMOTIONS = {
    "W": "angry",  # Wut / Ärger
    "L": "boredom",  # Langeweile
    "E": "disgust",  # Ekel
    "A": "fear",  # Angst
    "F": "happy",  # Freude
    "T": "sad",  # Trauer
    "N": "neutral",
}
TESS_EMOTIONS = {
    "angry": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happy",
    "neutral": "neutral",
    "ps": "pleasant_surprise",
    "sad": "sad",
}
SAVEE_EMOTIONS = {
    "a": "angry",
    "d": "disgust",
    "f": "fear",
    "h": "happy",
    "n": "neutral",
    "sa": "sad",
    "su": "surprise",
}
SAVEE_SPEAKERS = ("DC", "JE", "JK", "KL")
IEMOCAP_EMOTIONS = {"neu": "neutral", "ang": "angry", "hap": "happy", "exc": "happy", "sad": "sad"}
IEMOCAP_CLASSES = ["neutral", "angry", "happy", "sad"]

#: Class names of each corpus with fixed classes, in the corpus's official code order.
CORPUS_CLASSES: dict[str, list[str]] = {
    "ravdess": list(RAVDESS_EMOTIONS.values()),
    "crema_d": list(CREMA_D_EMOTIONS.values()),
    "emodb": list(EMODB_EMOTIONS.values()),
    "tess": list(TESS_EMOTIONS.values()),
    "savee": list(SAVEE_EMOTIONS.values()),
    "iemocap": IEMOCAP_CLASSES,
}


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
            self.exclude(path, f"duplicate of {first_path} ({first_where}), same label")
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


def audio_files(root: Path, scan: CorpusScan | None = None) -> list[Path]:
    """Audio files under ``root``, recursively, sorted; hidden and macOS metadata are excluded."""
    files = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in AUDIO_EXTENSIONS:
            continue
        if not is_audio_file(path) or "__MACOSX" in path.parts:
            if scan is not None:
                scan.exclude(path, "hidden or macOS metadata file")
            continue
        files.append(path)
    return files


RAVDESS_RE = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
RAVDESS_EXAMPLE = (
    "03-01-06-01-02-01-12.wav (modality-channel-emotion-intensity-statement-repetition-actor)"
)


def scan_ravdess(
    root: str | Path | None, skip_bad_files: bool = False, include_song: bool = False
) -> FileCorpus:
    """RAVDESS: ``MM-VV-EE-II-SS-RR-AA.wav``; speaker ``Actor_AA``.

    Only audio-only files (modality 03) are used; song files (vocal channel 02) are excluded
    unless ``include_song``.
    """
    root = check_root(root, "RAVDESS", RAVDESS_EXAMPLE)
    scan = CorpusScan("ravdess", "RAVDESS", skip_bad_files)
    classes = CORPUS_CLASSES["ravdess"]
    for path in audio_files(root, scan):
        m = RAVDESS_RE.match(path.stem)
        if m is None:
            scan.bad(path, f"file name outside the RAVDESS convention; expected {RAVDESS_EXAMPLE}")
            continue
        modality, channel, emotion, intensity, statement, repetition, actor = m.groups()
        problems = [
            f"{what} code {code!r} not in {allowed}"
            for what, code, allowed in (
                ("modality", modality, ("01", "02", "03")),
                ("vocal channel", channel, ("01", "02")),
                ("emotion", emotion, tuple(RAVDESS_EMOTIONS)),
                ("intensity", intensity, ("01", "02")),
                ("statement", statement, ("01", "02")),
                ("repetition", repetition, ("01", "02")),
                ("actor", actor, tuple(f"{i:02d}" for i in range(1, 25))),
            )
            if code not in allowed
        ]
        if problems:
            scan.bad(
                path, f"invalid RAVDESS name ({'; '.join(problems)}); expected {RAVDESS_EXAMPLE}"
            )
        elif modality != "03":
            scan.exclude(path, f"RAVDESS modality {modality} is not audio-only (03)")
        elif channel == "02" and not include_song:
            scan.exclude(
                path, "RAVDESS song file (vocal channel 02); set include_song=True to use it"
            )
        else:
            scan.add(path, RAVDESS_EMOTIONS[emotion], f"Actor_{actor}", path.stem)
    return scan.finish(root, RAVDESS_EXAMPLE, classes)


CREMA_D_RE = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_(LO|MD|HI|XX|X)$")
CREMA_D_EXAMPLE = "1001_DFA_ANG_XX.wav (ActorID_Sentence_Emotion_Level)"


def scan_crema_d(root: str | Path | None, skip_bad_files: bool = False) -> FileCorpus:
    """CREMA-D: ``ActorID_Sentence_Emotion_Level.wav``; speaker is the actor id."""
    root = check_root(root, "CREMA-D", CREMA_D_EXAMPLE)
    scan = CorpusScan("crema_d", "CREMA-D", skip_bad_files)
    classes = CORPUS_CLASSES["crema_d"]
    for path in audio_files(root, scan):
        m = CREMA_D_RE.match(path.stem)
        if m is None or m.group(3) not in CREMA_D_EMOTIONS:
            scan.bad(
                path,
                f"file name outside the CREMA-D convention; expected {CREMA_D_EXAMPLE} with "
                f"emotion one of {', '.join(CREMA_D_EMOTIONS)}",
            )
            continue
        scan.add(path, CREMA_D_EMOTIONS[m.group(3)], m.group(1), path.stem)
    return scan.finish(root, CREMA_D_EXAMPLE, classes)


EMODB_RE = re.compile(r"^(\d\d)([a-z]\d\d)([A-Z])([a-z])$")
EMODB_EXAMPLE = "03a01Fa.wav (speaker, text code, emotion letter, version)"


def scan_emodb(root: str | Path | None, skip_bad_files: bool = False) -> FileCorpus:
    """EmoDB: e.g. ``03a01Fa.wav`` (speaker 03, text a01, emotion F = happiness, version a)."""
    root = check_root(root, "EmoDB", EMODB_EXAMPLE)
    scan = CorpusScan("emodb", "EmoDB", skip_bad_files)
    classes = CORPUS_CLASSES["emodb"]
    for path in audio_files(root, scan):
        m = EMODB_RE.match(path.stem)
        if m is None or m.group(3) not in EMODB_EMOTIONS:
            scan.bad(
                path,
                f"file name outside the EmoDB convention; expected {EMODB_EXAMPLE} with emotion "
                f"letter one of {''.join(EMODB_EMOTIONS)}",
            )
            continue
        scan.add(path, EMODB_EMOTIONS[m.group(3)], m.group(1), path.stem)
    return scan.finish(root, EMODB_EXAMPLE, classes)


TESS_RE = re.compile(r"^(OAF|YAF)_(.+)_([a-z_]+?)$", re.IGNORECASE)
TESS_EXAMPLE = "OAF_back_angry.wav ({OAF,YAF}_word_emotion)"
TESS_ALIASES = {"pleasant_surprise": "ps", "pleasant_surprised": "ps"}


def scan_tess(root: str | Path | None, skip_bad_files: bool = False) -> FileCorpus:
    """TESS: ``{OAF,YAF}_{word}_{emotion}.wav``; speaker OAF or YAF."""
    root = check_root(root, "TESS", TESS_EXAMPLE)
    scan = CorpusScan("tess", "TESS", skip_bad_files)
    classes = CORPUS_CLASSES["tess"]
    for path in audio_files(root, scan):
        stem = path.stem
        for alias, code in TESS_ALIASES.items():
            if stem.lower().endswith("_" + alias):
                stem = stem[: -len(alias)] + code
        m = TESS_RE.match(stem)
        emotion = m.group(3).lower() if m else None
        if m is None or emotion not in TESS_EMOTIONS:
            scan.bad(
                path,
                f"file name outside the TESS convention; expected {TESS_EXAMPLE} with emotion "
                f"one of {', '.join(TESS_EMOTIONS)}",
            )
            continue
        speaker = m.group(1).upper()
        scan.add(path, TESS_EMOTIONS[emotion], speaker, path.stem.lower())
    return scan.finish(root, TESS_EXAMPLE, classes)


SAVEE_CODE = r"(sa|su|a|d|f|h|n)(\d\d)"  # two-letter codes first: "sa01" is sad, not angry
SAVEE_NESTED_RE = re.compile(rf"^{SAVEE_CODE}$")
SAVEE_FLAT_RE = re.compile(rf"^({'|'.join(SAVEE_SPEAKERS)})_{SAVEE_CODE}$")
SAVEE_EXAMPLE = "DC/sa01.wav or DC_sa01.wav (speaker DC/JE/JK/KL, emotion code, number)"


def scan_savee(root: str | Path | None, skip_bad_files: bool = False) -> FileCorpus:
    """SAVEE: ``{DC,JE,JK,KL}/{code}{nn}.wav`` or flat ``DC_a01.wav``."""
    root = check_root(root, "SAVEE", SAVEE_EXAMPLE)
    scan = CorpusScan("savee", "SAVEE", skip_bad_files)
    classes = CORPUS_CLASSES["savee"]
    for path in audio_files(root, scan):
        flat = SAVEE_FLAT_RE.match(path.stem)
        nested = SAVEE_NESTED_RE.match(path.stem)
        if flat is not None:
            speaker, code, number = flat.groups()
        elif nested is not None and path.parent.name in SAVEE_SPEAKERS:
            speaker, (code, number) = path.parent.name, nested.groups()
        else:
            scan.bad(path, f"file name outside the SAVEE convention; expected {SAVEE_EXAMPLE}")
            continue
        scan.add(path, SAVEE_EMOTIONS[code], speaker, f"{speaker}_{code}{number}")
    return scan.finish(root, SAVEE_EXAMPLE, classes)


IEMOCAP_LINE_RE = re.compile(r"^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(Ses\d\d[FM]_\S+)\s+(\S+)\s+\[")
IEMOCAP_UTT_RE = re.compile(r"^Ses(\d\d)[FM]_(.+)_([FM])\d+$")
IEMOCAP_EXAMPLE = (
    "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt with lines like "
    "'[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5, 2.5, 2.5]', and "
    "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav"
)


def scan_iemocap(root: str | Path | None, skip_bad_files: bool = False) -> FileCorpus:
    """IEMOCAP: labels from ``Session*/dialog/EmoEvaluation/*.txt``, audio from
    ``Session*/sentences/wav/<dialog>/<utterance>.wav``.

    The usual four classes (excited merged into happy); other labels are excluded. The speaker
    is the session plus the gender letter of the utterance, e.g. ``Ses01M``.
    """
    root = check_root(root, "IEMOCAP", IEMOCAP_EXAMPLE)
    scan = CorpusScan("iemocap", "IEMOCAP", skip_bad_files)
    sessions = sorted(p for p in root.rglob("Session[1-5]") if p.is_dir())
    for session in sessions:
        for label_file in sorted((session / "dialog" / "EmoEvaluation").glob("*.txt")):
            lines = label_file.read_text(errors="replace").splitlines()
            for number, line in enumerate(lines, start=1):
                if not line.startswith("["):
                    continue
                m = IEMOCAP_LINE_RE.match(line)
                if m is None:
                    scan.bad(
                        label_file, f"unparsable label line {line!r}; expected {IEMOCAP_EXAMPLE}"
                    )
                    continue
                utterance, code = m.group(3), m.group(4)
                um = IEMOCAP_UTT_RE.match(utterance)
                dialog = utterance.rsplit("_", 1)[0]
                wav = session / "sentences" / "wav" / dialog / f"{utterance}.wav"
                if um is None:
                    scan.bad(label_file, f"utterance id {utterance!r} outside the IEMOCAP naming")
                elif code not in IEMOCAP_EMOTIONS:
                    scan.exclude(wav, f"IEMOCAP label {code!r} outside the four classes")
                elif not wav.is_file():
                    scan.bad(
                        wav,
                        f"audio file listed in {label_file.name} does not exist",
                        missing=True,
                    )
                else:
                    speaker = f"Ses{um.group(1)}{um.group(3)}"
                    where = f"{label_file}, line {number}"
                    scan.add(wav, IEMOCAP_EMOTIONS[code], speaker, utterance, where)
    return scan.finish(root, IEMOCAP_EXAMPLE, IEMOCAP_CLASSES)


MANIFEST_EXAMPLE = "a CSV with a header 'path,label[,speaker]', paths relative to the CSV"


def _read_manifest(root: str | Path | None) -> tuple[Path, list[dict[str, str]]]:
    path = check_root(root, "manifest", MANIFEST_EXAMPLE)
    if not path.is_file():
        raise ValueError(f"manifest: '{path}' is a folder; `root` must be {MANIFEST_EXAMPLE}")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in ("path", "label") if c not in columns]
        if missing:
            raise ValueError(
                f"manifest '{path}': missing column(s) {', '.join(missing)}; found columns "
                f"{columns or 'none'}; expected {MANIFEST_EXAMPLE}"
            )
        rows = []
        for line, row in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            if not row["path"] or not row["label"]:
                raise ValueError(f"manifest '{path}', line {line}: empty path or label")
            row["line"] = str(line)
            rows.append(row)
    if not rows:
        raise FileNotFoundError(f"manifest '{path}' lists no files; expected {MANIFEST_EXAMPLE}")
    return path, rows


def scan_manifest(root: str | Path | None, skip_bad_files: bool = False) -> FileCorpus:
    """A CSV manifest with ``path,label[,speaker]`` columns; classes are the sorted labels of
    the clips kept.

    Paths are compared once resolved: a file listed twice with the same label is kept once
    (reported), with two different labels it is refused, naming both lines.
    """
    path, rows = _read_manifest(root)
    scan = CorpusScan("manifest", f"manifest '{path}'", skip_bad_files)
    for row in rows:
        audio = Path(row["path"]).expanduser()
        audio = (audio if audio.is_absolute() else path.parent / audio).resolve()
        if not audio.is_file():
            scan.bad(audio, f"listed on line {row['line']} but does not exist", missing=True)
            continue
        where = f"line {row['line']}"
        scan.add(audio, row["label"], row.get("speaker") or None, str(audio), where)
    return scan.finish(path, MANIFEST_EXAMPLE, None)


SCANNERS: dict[str, Callable[..., FileCorpus]] = {
    "ravdess": scan_ravdess,
    "crema_d": scan_crema_d,
    "emodb": scan_emodb,
    "tess": scan_tess,
    "savee": scan_savee,
    "iemocap": scan_iemocap,
    "manifest": scan_manifest,
}
