"""The pitch-preserving tempo change: durations, pitch, identity, bad factors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mts_lightning.data.tempo import MAX_TEMPO, MIN_TEMPO, change_tempo, check_tempo

RATE = 16000


def tone(freq: float, seconds: float) -> torch.Tensor:
    t = torch.arange(round(seconds * RATE), dtype=torch.float64) / RATE
    return (0.5 * torch.sin(2 * torch.pi * freq * t)).float()


def peak_frequency(wave: torch.Tensor) -> float:
    """Frequency of the strongest bin, refined by parabolic interpolation of the log spectrum."""
    x = wave.double().numpy() * np.hanning(wave.numel())
    spectrum = np.log(np.abs(np.fft.rfft(x, n=8 * x.size)) + 1e-12)
    k = int(np.argmax(spectrum))
    a, b, c = spectrum[k - 1 : k + 2]
    offset = 0.5 * (a - c) / (a - 2 * b + c)
    return (k + offset) * RATE / (8 * x.size)


@pytest.mark.slow
@pytest.mark.parametrize("tempo", [0.5, 0.7, 0.85, 1.2, 1.4, 2.0])
def test_duration_scales_and_pitch_is_kept(tempo):
    wave = tone(440.0, 1.5)
    out = change_tempo(wave, RATE, tempo)
    assert out.dtype == torch.float32
    # Within one feature frame (512 samples); exactly round(n / tempo) in fact.
    assert abs(out.numel() - wave.numel() / tempo) <= 1
    middle = out[out.numel() // 4 : 3 * out.numel() // 4]
    assert peak_frequency(middle) == pytest.approx(440.0, rel=0.01)
    # The energy stays that of the tone (no silence, no blow-up).
    assert middle.pow(2).mean().sqrt().item() == pytest.approx(0.5 / 2**0.5, rel=0.2)


def test_harmonics_keep_their_frequencies():
    wave = tone(200.0, 1.0) + tone(1300.0, 1.0)
    out = change_tempo(wave, RATE, 0.7)
    spectrum = np.abs(np.fft.rfft(out.double().numpy() * np.hanning(out.numel())))
    freqs = np.fft.rfftfreq(out.numel(), 1 / RATE)
    top = sorted(freqs[np.argsort(spectrum)[-2:]])
    assert top[0] == pytest.approx(200.0, rel=0.01) and top[1] == pytest.approx(1300.0, rel=0.01)


def test_tempo_one_is_bit_identical():
    wave = torch.randn(12345)
    assert torch.equal(change_tempo(wave, RATE, 1.0), wave)
    assert change_tempo(wave, RATE, 1) is wave


def test_clips_shorter_than_a_window():
    wave = tone(440.0, 0.05)  # 800 samples, under the 2048-sample window
    assert change_tempo(wave, RATE, 0.5).numel() == 1600
    assert change_tempo(wave, RATE, 2.0).numel() == 400


@pytest.mark.parametrize(
    "tempo", [0, -1.0, float("nan"), float("inf"), "fast", True, 1000, 4.001, 0.2499, 1e-6]
)
def test_bad_tempo(tempo):
    with pytest.raises(ValueError, match=r"^tempo must be a number from 0.25 to 4 \(") as info:
        change_tempo(tone(440.0, 0.1), RATE, tempo)
    assert str(info.value).endswith(f"got {tempo!r}") and "\n" not in str(info.value)


@pytest.mark.parametrize("tempo", [MIN_TEMPO, MAX_TEMPO])
@pytest.mark.parametrize("seconds", [0.01, 1.0])
def test_the_extreme_tempos_honoured(tempo, seconds):
    """At both ends of the range, long clips and clips far shorter than a window: the length
    asked, the pitch kept where there is enough of the tone to measure it."""
    assert check_tempo("tempo", tempo) == tempo
    wave = tone(440.0, seconds)
    out = change_tempo(wave, RATE, tempo)
    assert out.numel() == round(wave.numel() / tempo) and torch.isfinite(out).all()
    if out.numel() >= RATE // 4:
        middle = out[out.numel() // 4 : 3 * out.numel() // 4]
        assert peak_frequency(middle) == pytest.approx(440.0, rel=0.01)


def test_bad_shape():
    with pytest.raises(ValueError, match=r"waveform must be 1-D"):
        change_tempo(torch.zeros(2, 100), RATE, 0.7)
