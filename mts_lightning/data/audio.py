"""Reading audio: soundfile for decoding, one resampler for every rate, strict checks.

Every problem with a file raises :class:`BadAudioError`, which names the file and says what is
wrong, so that callers can either stop with a clear message or skip the file and report it.

Waveforms given as arrays (:func:`samples_to_float`, :func:`frames_by_channels`) follow the
rules of audio files: integer samples are PCM (scaled as a WAV file's), and a 2-D array's
short axis holds the channels, in either order.

Channels are averaged to mono, except where averaging cancels them (a stereo file whose right
channel is the inverted left one, a wiring fault of real recordings): then the loudest channel
is kept, with a warning naming the file, rather than training on rounding residue.
"""

from __future__ import annotations

import math
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
#: Integer sample types read as PCM, as in a WAV file: ``(offset, full scale)``, the sample
#: ``x`` meaning ``(x - offset) / full scale`` (unsigned 8-bit PCM is centred on 128).
PCM_SCALES: dict[str, tuple[int, int]] = {
    "int8": (0, 2**7),
    "int16": (0, 2**15),
    "int32": (0, 2**31),
    "uint8": (2**7, 2**7),
}
#: The most channels a 2-D waveform array may have. Its shorter axis holds the channels, in
#: either order (``(channels, samples)`` as torch, ``(samples, channels)`` as soundfile); 32
#: covers surround, third-order ambisonics and microphone arrays, and leaves an array whose
#: axes are both this short (under 2 ms of audio) ambiguous.
MAX_CHANNELS = 32
#: The resampling filter (a Hann-windowed sinc; torchaudio's defaults): zero crossings on
#: each side, and cut-off as a fraction of the lower rate's Nyquist frequency.
LOWPASS_ZERO_CROSSINGS = 6
ROLLOFF = 0.99
#: Largest polyphase kernel (phases x taps) built for a pair of rates. Every common pair is far
#: below it (44.1 kHz -> 16 kHz: 76 000); rates whose reduced ratio is large (16001 -> 16000:
#: 16000 phases of 16013 taps, 1 GB) evaluate the same filter at each output sample instead.
MAX_POLYPHASE_KERNEL = 2**20
#: Filter values computed at once on that path (rows of output samples x taps): bounds memory.
RESAMPLE_CHUNK = 2**16
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
    resampled (:func:`resample`, any rate) when the file's rate differs. Raises :class:`BadAudioError` for a
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
    """Resample a 1-D waveform from ``orig_rate`` to ``sample_rate`` (Hz, any positive
    integers); identity when they match.

    Band-limited interpolation with a Hann-windowed sinc of :data:`LOWPASS_ZERO_CROSSINGS`
    zero crossings cut at :data:`ROLLOFF` of the lower Nyquist frequency: output sample ``j``
    is ``sum_n x[n] h(n / orig_rate - j / sample_rate)``, ``ceil(samples * sample_rate /
    orig_rate)`` samples in all. Where the rates' reduced ratio gives a polyphase kernel of at
    most :data:`MAX_POLYPHASE_KERNEL` values (every common pair of rates) it runs as
    torchaudio's polyphase convolution; otherwise (16001 Hz, 44101 Hz, a prime rate) the same
    filter is evaluated at each output sample, :data:`RESAMPLE_CHUNK` values at a time, so
    time grows with the samples and memory stays bounded whatever the rates. The two agree
    within 2e-4 (torchaudio builds its kernel in float32; this path works in float64).
    Returns float32.
    """
    for name, rate in (("orig_rate", orig_rate), ("sample_rate", sample_rate)):
        if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
            raise ValueError(f"{name} must be a positive integer (Hz), got {rate!r}")
    if waveform.dim() != 1:
        raise ValueError(f"waveform must be 1-D (samples,), got shape {tuple(waveform.shape)}")
    if orig_rate == sample_rate:
        return waveform
    divisor = math.gcd(int(orig_rate), int(sample_rate))
    orig, new = int(orig_rate) // divisor, int(sample_rate) // divisor
    if new * (2 * _filter_reach(orig, new) + orig) <= MAX_POLYPHASE_KERNEL:
        return AF.resample(waveform.float(), orig, new, LOWPASS_ZERO_CROSSINGS, ROLLOFF)
    return _resample_pointwise(waveform, orig, new)


def _filter_reach(orig: int, new: int) -> int:
    """Input samples on each side of an output sample that the filter reaches (rates reduced
    by their greatest common divisor)."""
    return math.ceil(LOWPASS_ZERO_CROSSINGS * orig / (min(orig, new) * ROLLOFF))


def _resample_pointwise(waveform: torch.Tensor, orig: int, new: int) -> torch.Tensor:
    """:func:`resample`'s filter evaluated at every output sample (rates reduced, coprime)."""
    cutoff = min(orig, new) * ROLLOFF
    reach = _filter_reach(orig, new)
    taps = torch.arange(2 * reach + 1)
    padded = torch.nn.functional.pad(waveform.to(torch.float64), (reach, reach))
    out = torch.empty(-(-waveform.numel() * new // orig), dtype=torch.float32)
    rows = max(1, RESAMPLE_CHUNK // taps.numel())
    for start in range(0, out.numel(), rows):
        j = torch.arange(start, min(out.numel(), start + rows))
        # Padded index of each tap, and its distance to the output position in units of the
        # filter's zero crossings, (n / orig - j / new) * cutoff, from exact integers.
        index = (j * orig // new)[:, None] + taps
        t = ((index - reach) * new - j[:, None] * orig).to(torch.float64) * (cutoff / (orig * new))
        t = t.clamp_(-LOWPASS_ZERO_CROSSINGS, LOWPASS_ZERO_CROSSINGS)
        window = torch.cos(t * (math.pi / LOWPASS_ZERO_CROSSINGS)).add_(1).mul_(0.5)
        kernel = torch.sinc(t).mul_(window)
        out[start : start + j.numel()] = (padded[index] * kernel).sum(dim=1) * (cutoff / orig)
    return out


def check_length(
    waveform: torch.Tensor, path: str | Path, min_samples: int, after: str = "resampling"
) -> torch.Tensor:
    """Raise :class:`BadAudioError` when ``waveform`` is shorter than ``min_samples``."""
    if waveform.numel() < min_samples:
        raise BadAudioError(
            path,
            f"too short: {waveform.numel()} samples after {after}, fewer than one "
            f"analysis frame ({min_samples} samples, n_fft)",
        )
    return waveform


def samples_to_float(samples: torch.Tensor | np.ndarray, what: str = "waveform") -> torch.Tensor:
    """An array or tensor of samples as float32, integer samples read as PCM.

    Floating-point samples are kept as they are. Integer samples mean what they mean in a WAV
    file (:data:`PCM_SCALES`): int16 ``x / 32768``, int32 ``x / 2**31`` (24-bit audio read as
    int32 included), int8 ``x / 128``, uint8 ``(x - 128) / 128``. Any other type is refused
    with a ``ValueError`` naming ``what``: int64 (Python's and numpy's default integer, which
    no audio format stores: its samples could be 16-bit values or 32-bit ones, so no scale is
    right for all), other unsigned widths, bool, complex and object arrays.
    """
    if isinstance(samples, torch.Tensor):
        tensor = samples.detach().cpu()
        if tensor.is_floating_point():
            return tensor.float()
        kind = str(tensor.dtype).removeprefix("torch.")
        array = tensor.numpy() if kind in PCM_SCALES else None
    else:
        array = np.asarray(samples)
        kind = array.dtype.name
        if array.dtype.kind == "f":
            return torch.from_numpy(np.array(array, dtype=np.float32))
    if kind not in PCM_SCALES:
        hint = (
            "which no audio format stores (16-bit or 32-bit values?): cast it to the type of "
            "its samples, e.g. int16, or to float in [-1, 1]"
            if kind == "int64"
            else "expected float samples in [-1, 1] or integer PCM"
        )
        raise ValueError(
            f"{what} has dtype {kind}, {hint} ({', '.join(PCM_SCALES)}: scaled as in a WAV file)"
        )
    offset, scale = PCM_SCALES[kind]
    return torch.from_numpy(((array.astype(np.float64) - offset) / scale).astype(np.float32))


def frames_by_channels(samples: torch.Tensor, what: str = "waveform") -> torch.Tensor:
    """A 1-D ``(samples,)`` or 2-D waveform as ``(samples, channels)``.

    The shorter axis of a 2-D waveform holds the channels, at most :data:`MAX_CHANNELS` of them,
    whichever its place: ``(channels, samples)`` and ``(samples, channels)`` both work. A
    ``ValueError`` naming the shape refuses what stays ambiguous (both axes of at most
    :data:`MAX_CHANNELS`), a 2-D waveform with no axis that short, and other dimensions.
    """
    shape = tuple(samples.shape)
    if samples.dim() == 1:
        return samples[:, None]
    if samples.dim() != 2:
        raise ValueError(
            f"{what} must be 1-D (samples,) or 2-D (channels and samples, either order), got "
            f"shape {shape}"
        )
    if max(shape) <= MAX_CHANNELS:
        raise ValueError(
            f"{what} of shape {shape} is ambiguous: either axis could hold the channels (at "
            f"most {MAX_CHANNELS}); give it as 1-D (samples,) or with more than {MAX_CHANNELS} "
            "samples"
        )
    if min(shape) > MAX_CHANNELS:
        raise ValueError(
            f"{what} of shape {shape} has no channel axis: a 2-D waveform is (channels, "
            f"samples) or (samples, channels) with at most {MAX_CHANNELS} channels"
        )
    return samples if shape[1] < shape[0] else samples.T
