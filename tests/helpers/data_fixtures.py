"""Tiny corpus folders for tests: short tones written with soundfile under official names.

Every ``make_*_folder`` function writes a small folder in the layout of a real corpus and
returns the list of written files. Tones are short (0.3 s at 8 kHz by default) and their
pitch depends on the emotion, so features differ between classes.
"""

from __future__ import annotations

import csv
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 8000
SECONDS = 0.3


def write_tone(
    path: str | Path,
    freq: float = 440.0,
    seconds: float = SECONDS,
    sample_rate: int = SAMPLE_RATE,
    channels: int = 1,
    amplitude: float = 0.3,
) -> Path:
    """Write a sine tone (with a little deterministic noise) as 16-bit PCM."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    rng = np.random.default_rng(zlib.crc32(path.name.encode()))
    tone = amplitude * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.shape)
    data = np.repeat(tone[:, None], channels, axis=1) if channels > 1 else tone
    sf.write(str(path), data.astype(np.float32), sample_rate, subtype="PCM_16")
    return path


def make_ravdess_folder(
    root: str | Path,
    actors: Iterable[int] = range(1, 7),
    emotions: Iterable[int] = range(1, 9),
    statements: Iterable[int] = (1,),
    song: bool = False,
    seconds: float = SECONDS,
    sample_rate: int = SAMPLE_RATE,
) -> list[Path]:
    """RAVDESS speech files ``Actor_XX/03-01-EE-01-SS-01-XX.wav`` (normal intensity, first
    repetition); with ``song``, also song files (vocal channel 02) for emotions 01-06."""
    root = Path(root)
    files = []
    for actor in actors:
        for emotion in emotions:
            for statement in statements:
                channels = ("01", "02") if song and emotion <= 6 else ("01",)
                for channel in channels:
                    name = f"03-{channel}-{emotion:02d}-01-{statement:02d}-01-{actor:02d}.wav"
                    files.append(
                        write_tone(
                            root / f"Actor_{actor:02d}" / name,
                            200 + 50 * emotion,
                            seconds,
                            sample_rate,
                        )
                    )
    return files


def make_crema_d_folder(
    root: str | Path,
    actors: Iterable[int] = (1001, 1002, 1003),
    sentence: str = "DFA",
    codes: Sequence[str] = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD"),
    seconds: float = SECONDS,
) -> list[Path]:
    """CREMA-D files ``AudioWAV/ActorID_Sentence_Emotion_Level.wav``, one per emotion."""
    return [
        write_tone(
            Path(root) / "AudioWAV" / f"{actor}_{sentence}_{code}_XX.wav", 200 + 40 * i, seconds
        )
        for actor in actors
        for i, code in enumerate(codes)
    ]


def make_emodb_folder(
    root: str | Path,
    speakers: Sequence[str] = ("03", "08", "09"),
    letters: str = "WLEAFTN",
    seconds: float = SECONDS,
) -> list[Path]:
    """EmoDB files ``wav/03a01Wa.wav``, one per emotion letter and speaker."""
    return [
        write_tone(Path(root) / "wav" / f"{speaker}a01{letter}a.wav", 200 + 40 * i, seconds)
        for speaker in speakers
        for i, letter in enumerate(letters)
    ]


def make_tess_folder(
    root: str | Path,
    words: Sequence[str] = ("back", "bar"),
    emotions: Sequence[str] = ("angry", "disgust", "fear", "happy", "neutral", "ps", "sad"),
    seconds: float = SECONDS,
) -> list[Path]:
    """TESS files ``{OAF,YAF}_{emotion}/{speaker}_{word}_{emotion}.wav``."""
    return [
        write_tone(
            Path(root) / f"{speaker}_{emotion}" / f"{speaker}_{word}_{emotion}.wav",
            200 + 40 * i,
            seconds,
        )
        for speaker in ("OAF", "YAF")
        for i, emotion in enumerate(emotions)
        for word in words
    ]


def make_savee_folder(
    root: str | Path,
    flat: bool = False,
    numbers: Sequence[int] = (1,),
    codes: Sequence[str] = ("a", "d", "f", "h", "n", "sa", "su"),
    seconds: float = SECONDS,
) -> list[Path]:
    """SAVEE files ``AudioData/{DC,JE,JK,KL}/{code}{nn}.wav``, or flat ``DC_a01.wav``."""
    files = []
    for speaker in ("DC", "JE", "JK", "KL"):
        for i, code in enumerate(codes):
            for number in numbers:
                name = f"{code}{number:02d}.wav"
                path = Path(root) / (f"{speaker}_{name}" if flat else f"AudioData/{speaker}/{name}")
                files.append(write_tone(path, 200 + 40 * i, seconds))
    return files


def make_iemocap_folder(
    root: str | Path,
    sessions: Iterable[int] = range(1, 6),
    codes: Sequence[str] = ("neu", "ang", "hap", "exc", "sad", "fru"),
    seconds: float = SECONDS,
) -> list[Path]:
    """IEMOCAP layout: per session one improvised dialog with utterances of both genders,
    labelled with ``codes`` (by default neu, ang, hap, exc, sad and fru, frustration being
    outside the four classes)."""
    files = []
    for session in sessions:
        base = Path(root) / "IEMOCAP_full_release" / f"Session{session}"
        dialog = f"Ses{session:02d}F_impro01"
        lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        for i, code in enumerate(codes):
            for gender in "FM":
                utterance = f"{dialog}_{gender}{i:03d}"
                lines.append(
                    f"[{i:.4f} - {i + 0.3:.4f}]\t{utterance}\t{code}\t[2.5000, 2.5000, 2.5000]"
                )
                lines.append(f"C-E1:\t{code.capitalize()};\t()")
                files.append(
                    write_tone(
                        base / "sentences" / "wav" / dialog / f"{utterance}.wav",
                        200 + 40 * i,
                        seconds,
                    )
                )
        label_dir = base / "dialog" / "EmoEvaluation"
        label_dir.mkdir(parents=True, exist_ok=True)
        (label_dir / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
    return files


def make_manifest(
    root: str | Path, rows: Sequence[dict[str, str]], name: str = "manifest.csv"
) -> Path:
    """Write a manifest CSV with the columns of the first row."""
    path = Path(root) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_stereo(path: str | Path, right: str, freq: float = 440.0) -> Path:
    """Write a stereo tone whose right channel is the left one ``inverted``, ``silent`` or
    the ``same``."""
    path = write_tone(path, freq)
    left, sample_rate = sf.read(str(path), dtype="float32")
    other = {"inverted": -left, "silent": np.zeros_like(left), "same": left}[right]
    sf.write(str(path), np.stack([left, other], axis=1), sample_rate, subtype="PCM_16")
    return path


LFS_POINTER = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    "size 81234\n"
)


def write_bad_file(path: str | Path, kind: str) -> Path:
    """Write a broken audio file: ``empty``, ``truncated``, ``garbage``, ``silent``, ``short``
    (fewer samples than one analysis frame) or ``lfs_pointer`` (the text a Git LFS clone
    holds before ``git lfs pull``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        data = write_tone(path).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    elif kind == "silent":
        sf.write(
            str(path), np.zeros(SAMPLE_RATE // 2, dtype=np.float32), SAMPLE_RATE, subtype="PCM_16"
        )
    elif kind == "short":
        write_tone(path, seconds=0.005)
    elif kind == "lfs_pointer":
        path.write_text(LFS_POINTER)
    else:
        raise ValueError(f"unknown bad file kind {kind!r}")
    return path
