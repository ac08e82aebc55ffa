"""Reading audio files: soundfile for decoding, torchaudio for resampling, strict checks.

Every problem with a file raises :class:`BadAudioError`, which names the file and says what is
wrong, so that callers can either stop with a clear message or skip the file and report it.

Channels are averaged to mono, except where averaging cancels them (a stereo file whose right
channel is the inverted left one, a wiring fault of real recordings): then the loudest channel
is kept, with a warning naming the file, rather than training on rounding residue.
"""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from .errors import DataError

#: File name extensions treated as audio when folders are listed.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")

#: Peak amplitude below which a file counts as silent (-100 dBFS, under one 16-bit step).
SILENCE_PEAK = 1e-5
#: Channels cancel when their average keeps less than this share of their mean energy
#: (identical channels keep 1, independent or one silent channel 0.5, inverted ones ~0).
CANCELLATION_RATIO = 0.1
#: How every Git LFS pointer file starts (what a clone without ``git lfs pull`` holds).
LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/"
LFS_POINTER_REASON = (
    "is a Git LFS pointer, not audio: run `git lfs pull` in the clone it came from to fetch "
    "the audio"
)


class BadAudioError(DataError):
    """An audio file that cannot be used; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def walk_audio(root: Path) -> tuple[list[Path], list[Path]]:
    """Audio files under ``root``, recursively, sorted; and, apart, the audio-named files that
    are hidden or macOS metadata (``._x.wav``, ``__MACOSX/``), which are never audio to use.

    Folders that are symbolic links are followed (a corpus assembled from links to folders on
    other disks), each real folder once, so a link back up the tree cannot loop.
    """
    files, hidden = [], []
    seen: set[str] = set()
    for folder, subfolders, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders[:] = []
            continue
        seen.add(real)
        for name in names:
            path = Path(folder) / name
            if path.suffix.lower() not in AUDIO_EXTENSIONS or not path.is_file():
                continue
            concealed = name.startswith(".") or "__MACOSX" in path.parts
            (hidden if concealed else files).append(path)
    return sorted(files), sorted(hidden)


def list_audio_files(paths: Sequence[str]) -> list[Path]:
    """Audio files named in ``paths`` (files, or folders searched recursively), in order."""
    files: list[Path] = []
    for entry in paths:
        path = Path(entry).expanduser().resolve()
        if path.is_dir():
            found, _ = walk_audio(path)
            if not found:
                raise FileNotFoundError(
                    f"predict_paths: folder '{path}' holds no audio files "
                    f"({', '.join(AUDIO_EXTENSIONS)})"
                )
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"predict_paths: '{path}' does not exist")
    return files


def is_lfs_pointer(path: Path) -> bool:
    """Whether ``path`` is a Git LFS pointer text instead of the file it stands for."""
    with path.open("rb") as f:
        return f.read(len(LFS_POINTER_PREFIX)) == LFS_POINTER_PREFIX


def _wav_truncation(path: Path) -> str | None:
    """Describe a truncated RIFF/WAVE file, or return None when its data chunk is complete.

    libsndfile silently returns the frames that are present when a WAV file was cut short,
    so the declared size of the ``data`` chunk is compared with the bytes on disk.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        header = f.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return None
        offset = 12
        while offset + 8 <= size:
            f.seek(offset)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                present = size - offset - 8
                if chunk_size in (0, 0xFFFFFFFF) or chunk_size <= present:
                    return None
                return (
                    f"truncated WAV file: the header declares {chunk_size} bytes of audio "
                    f"but only {present} are present"
                )
            offset += 8 + chunk_size + (chunk_size & 1)
    return None


def audio_duration(path: str | Path) -> float:
    """Duration in seconds read from the file header (no decoding)."""
    info = audio_info(path)
    return info.frames / info.samplerate


def audio_info(path: str | Path, check_truncation: bool = False) -> sf._SoundFileInfo:
    """The file's header (frames, rate, channels), after the checks that need no decoding:
    a missing or empty file, a Git LFS pointer, with ``check_truncation`` a cut-short WAV
    file, and an unreadable header each raise :class:`BadAudioError`."""
    path = Path(path)
    _check_file(path)
    if check_truncation and path.suffix.lower() == ".wav":
        truncation = _wav_truncation(path)
        if truncation:
            raise BadAudioError(path, truncation)
    try:
        return sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as err:
        raise BadAudioError(path, f"unreadable audio file ({err})") from err


def load_audio(path: str | Path, sample_rate: int, min_samples: int = 1) -> torch.Tensor:
    """Read ``path`` as a mono float32 waveform at ``sample_rate``, checking it is usable.

    Channels are averaged (see :func:`to_mono` for channels that cancel); the waveform is
    resampled with torchaudio when the file's rate differs. Raises :class:`BadAudioError` for a
    missing, empty, truncated or unreadable file, a Git LFS pointer, non-finite samples, a
    silent file, or one shorter than ``min_samples`` after resampling.
    """
    path = Path(path)
    _check_file(path)
    if path.suffix.lower() == ".wav":
        truncation = _wav_truncation(path)
        if truncation:
            raise BadAudioError(path, truncation)
    try:
        data, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise BadAudioError(path, f"unreadable audio file ({err})") from err
    if data.shape[0] == 0:
        raise BadAudioError(path, "no audio samples (0 frames)")
    if not np.isfinite(data).all():
        raise BadAudioError(path, "audio contains NaN or infinite samples")
    waveform = torch.from_numpy(to_mono(data, path))
    if float(waveform.abs().max()) < SILENCE_PEAK:
        raise BadAudioError(path, f"silent file (peak amplitude below {SILENCE_PEAK:g})")
    return check_length(resample(waveform, file_rate, sample_rate), path, min_samples)


def _check_file(path: Path) -> None:
    """Raise :class:`BadAudioError` for a missing or empty file, or a Git LFS pointer."""
    if not path.is_file():
        raise BadAudioError(path, "file does not exist")
    if path.stat().st_size == 0:
        raise BadAudioError(path, "empty file (0 bytes)")
    if is_lfs_pointer(path):
        raise BadAudioError(path, LFS_POINTER_REASON)


def to_mono(data: np.ndarray, path: str | Path) -> np.ndarray:
    """``(frames, channels)`` float32 -> ``(frames,)``: the average of the channels.

    Where the average keeps less than :data:`CANCELLATION_RATIO` of the channels' mean energy
    (the channels cancel: one is the other inverted), the loudest channel is returned instead,
    with a warning naming ``path``. A silent channel beside a live one does not cancel.
    """
    mono = data.mean(axis=1)
    if data.shape[1] < 2:
        return mono
    energies = np.square(data, dtype=np.float64).sum(axis=0)
    if float(np.square(mono, dtype=np.float64).sum()) >= CANCELLATION_RATIO * energies.mean():
        return mono
    loudest = int(energies.argmax())
    warnings.warn(
        f"{path}: its {data.shape[1]} channels cancel when averaged (one is the other "
        f"inverted?); using channel {loudest} alone",
        UserWarning,
        stacklevel=2,
    )
    return np.ascontiguousarray(data[:, loudest])


def resample(waveform: torch.Tensor, orig_rate: int, sample_rate: int) -> torch.Tensor:
    """Resample a 1-D waveform with torchaudio (identity when the rates match)."""
    if orig_rate == sample_rate:
        return waveform
    return AF.resample(waveform, orig_rate, sample_rate)


def check_length(waveform: torch.Tensor, path: str | Path, min_samples: int) -> torch.Tensor:
    """Raise :class:`BadAudioError` when ``waveform`` is shorter than ``min_samples``."""
    if waveform.numel() < min_samples:
        raise BadAudioError(
            path,
            f"too short: {waveform.numel()} samples after resampling, fewer than one "
            f"analysis frame ({min_samples} samples, n_fft)",
        )
    return waveform
