"""Reading audio files: soundfile for decoding, torchaudio for resampling, strict checks.

Every problem with a file raises :class:`BadAudioError`, which names the file and says what is
wrong, so that callers can either stop with a clear message or skip the file and report it.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

#: File name extensions treated as audio when folders are listed.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")

#: Peak amplitude below which a file counts as silent (-100 dBFS, under one 16-bit step).
SILENCE_PEAK = 1e-5


class BadAudioError(ValueError):
    """An audio file that cannot be used; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def is_audio_file(path: Path) -> bool:
    """Whether ``path`` has an audio extension and is not a hidden/AppleDouble file."""
    return path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


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
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as err:
        raise BadAudioError(path, f"unreadable audio file ({err})") from err
    return info.frames / info.samplerate


def load_audio(path: str | Path, sample_rate: int, min_samples: int = 1) -> torch.Tensor:
    """Read ``path`` as a mono float32 waveform at ``sample_rate``, checking it is usable.

    Channels are averaged; the waveform is resampled with torchaudio when the file's rate
    differs. Raises :class:`BadAudioError` for a missing, empty, truncated or unreadable file,
    non-finite samples, a silent file, or one shorter than ``min_samples`` after resampling.
    """
    path = Path(path)
    if not path.is_file():
        raise BadAudioError(path, "file does not exist")
    if path.stat().st_size == 0:
        raise BadAudioError(path, "empty file (0 bytes)")
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
    waveform = torch.from_numpy(data.mean(axis=1))
    if float(waveform.abs().max()) < SILENCE_PEAK:
        raise BadAudioError(path, f"silent file (peak amplitude below {SILENCE_PEAK:g})")
    return check_length(resample(waveform, file_rate, sample_rate), path, min_samples)


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
