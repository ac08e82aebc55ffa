"""Changing a recording's speaking rate with its pitch kept: a phase vocoder with identity
phase locking, on torch's STFT.

``tempo`` > 1 speaks faster (the clip gets shorter), < 1 slower: a clip of ``n`` samples
becomes ``round(n / tempo)`` samples long. The short-time Fourier transform is re-timed: each
output frame takes the magnitudes interpolated between the two nearest input frames, and its
phases are advanced at each spectral peak's own measured frequency, so every partial keeps
its frequency (the pitch) while its duration changes. The inverse STFT gives the waveform.

Why this and not :func:`torchaudio.functional.phase_vocoder` alone: that plain vocoder
advances every bin on its own, and after any onset the bins of one partial drift out of phase
with each other for good; their overlap-add then cancels, and speech-like clips lost 2-4 dB
(a held tone after an onset 10 dB) at tempo 0.5-2. Identity phase locking (Laroche and
Dolson, 1999: each bin keeps its original phase offset to the nearest peak) keeps partials
coherent. It is built on ``torch.stft``/``torch.istft`` and the torchaudio interpolation
scheme, already dependencies, and runs in the process that computes the features.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

#: Analysis window of the phase vocoder, in seconds (2048 samples at 16 kHz), and its hop.
WINDOW_SECONDS = 0.128
HOP_FRACTION = 4
#: The tempos the vocoder honours: at most ``HOP_FRACTION`` times as fast or as slow. Faster,
#: the analysis would move by more than one window per output frame and drop whole stretches
#: of the recording instead of playing them faster; slower, every analysis frame would be
#: held for more than a window and the clip grow without bound (a 3 s clip at tempo 0.001
#: lasts 50 min), a smear of one spectrum rather than slower speech. Symmetric around 1.0,
#: as tempo sweeps are.
MIN_TEMPO = 1 / HOP_FRACTION
MAX_TEMPO = float(HOP_FRACTION)


def check_tempo(name: str, tempo: float) -> float:
    """Validate a tempo factor: a number from :data:`MIN_TEMPO` to :data:`MAX_TEMPO`
    (1.0 leaves the audio unchanged); ``ValueError`` naming ``name`` otherwise."""
    rule = (
        f"{name} must be a number from {MIN_TEMPO:g} to {MAX_TEMPO:g} (x times as fast, pitch "
        f"kept; 1.0: unchanged; the re-timing covers a factor of {HOP_FRACTION} either way)"
    )
    if isinstance(tempo, bool) or not isinstance(tempo, (int, float)):
        raise ValueError(f"{rule}, got {tempo!r}")
    if not MIN_TEMPO <= tempo <= MAX_TEMPO:  # NaN fails every comparison
        raise ValueError(f"{rule}, got {tempo!r}")
    return float(tempo)


def check_augment_tempos(tempos: Sequence[float] | None) -> tuple[float, ...]:
    """Validate the tempos of waveform rate augmentation: ``None`` (none) or a non-empty list
    of distinct tempo factors (:func:`check_tempo`)."""
    if tempos is None:
        return ()
    if isinstance(tempos, (str, bytes)) or not isinstance(tempos, Sequence) or not tempos:
        raise ValueError(
            f"augment.tempos must be a non-empty list of tempo factors from {MIN_TEMPO:g} to "
            f"{MAX_TEMPO:g} such as "
            f"[0.7, 1.0, 1.4], or null for no rate augmentation; got {tempos!r}"
        )
    checked = tuple(check_tempo(f"augment.tempos[{i}]", t) for i, t in enumerate(tempos))
    if len(set(checked)) != len(checked):
        raise ValueError(f"augment.tempos lists a tempo twice: {list(tempos)}")
    return checked


def change_tempo(waveform: torch.Tensor, sample_rate: int, tempo: float) -> torch.Tensor:
    """``waveform`` ``(samples,)`` played ``tempo`` times as fast, pitch kept.

    Returns a float32 waveform of ``round(samples / tempo)`` samples; ``tempo == 1`` returns
    the input unchanged (the same tensor). ``tempo`` must be within :data:`MIN_TEMPO` and
    :data:`MAX_TEMPO` (:func:`check_tempo`).
    """
    tempo = check_tempo("tempo", tempo)
    if waveform.dim() != 1:
        raise ValueError(f"waveform must be 1-D (samples,), got shape {tuple(waveform.shape)}")
    if tempo == 1.0:
        return waveform
    n_fft = 2 ** round(math.log2(WINDOW_SECONDS * sample_rate))
    hop = n_fft // HOP_FRACTION
    window = torch.hann_window(n_fft, dtype=torch.float64)
    signal = waveform.to(torch.float64)
    length = max(1, round(signal.numel() / tempo))
    # Pad so that the analysis covers the whole clip even when it is shorter than a window.
    padded = torch.nn.functional.pad(signal, (0, max(0, n_fft - signal.numel())))
    spec = torch.stft(padded, n_fft, hop, window=window, center=True, return_complex=True)
    stretched = _phase_locked_vocoder(spec, tempo, hop, n_fft)
    out = torch.istft(stretched, n_fft, hop, window=window, center=True, length=length)
    return out.to(torch.float32)


def _phase_locked_vocoder(spec: torch.Tensor, rate: float, hop: int, n_fft: int) -> torch.Tensor:
    """Re-time a complex STFT ``(freq, frames)`` by ``rate`` with identity phase locking."""
    bins, frames = spec.shape
    steps = torch.arange(0, frames, rate, dtype=torch.float64)
    first = steps.long()
    alpha = (steps - first)[None]
    spec = torch.nn.functional.pad(spec, (0, 2))
    before, after = spec[:, first], spec[:, first + 1]
    magnitude = (1 - alpha) * before.abs() + alpha * after.abs()
    # Measured phase advance per hop: the expected advance of each bin's centre frequency
    # plus the deviation, taken modulo 2 pi.
    expected = torch.linspace(0, math.pi * hop, bins, dtype=torch.float64)[:, None]
    deviation = after.angle() - before.angle() - expected
    advance = expected + deviation - 2 * math.pi * torch.round(deviation / (2 * math.pi))
    source_phase = before.angle()
    peak = _nearest_peaks(magnitude)
    # Everything but the running peak phases is known up front; frames go along rows so the
    # sequential loop below touches contiguous memory (numpy: microseconds per frame).
    peak_advance = advance[:, :-1].gather(0, peak[:, 1:])
    offset = source_phase - source_phase.gather(0, peak)
    step = (peak_advance + offset[:, 1:]).T.contiguous().numpy()
    peak_rows = peak[:, 1:].T.contiguous().numpy()
    phases = np.empty((magnitude.shape[1], bins))
    phases[0] = source_phase[:, 0].numpy()
    for t in range(1, phases.shape[0]):
        phases[t] = phases[t - 1][peak_rows[t - 1]] + step[t - 1]
    return torch.polar(magnitude, torch.from_numpy(phases).T)


def _nearest_peaks(magnitude: torch.Tensor) -> torch.Tensor:
    """For every bin and frame of ``magnitude`` ``(freq, frames)``, the bin of the nearest
    local maximum of that frame (a bin is its own peak in a frame without one)."""
    bins, frames = magnitude.shape
    padded = torch.nn.functional.pad(magnitude, (0, 0, 1, 1), value=-1.0)
    is_peak = (magnitude > padded[:-2]) & (magnitude >= padded[2:])
    index = torch.arange(bins)[:, None].expand(bins, frames)
    # The last peak at or below each bin, and the first at or above it.
    below = torch.where(is_peak, index, -1).cummax(dim=0).values
    above = torch.where(is_peak, index, bins).flip(0).cummin(dim=0).values.flip(0)
    use_above = (below < 0) | ((above < bins) & (above - index < index - below))
    nearest = torch.where(use_above, above, below)
    return torch.where((nearest < 0) | (nearest >= bins), index, nearest)
