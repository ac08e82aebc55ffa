"""Audio in: one resampler for every rate (accurate, bounded memory), integer PCM scaled as in
a WAV file, the channel axis found in either place, and everything else refused in one line."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from mts_lightning.data.audio import (
    MAX_CHANNELS,
    MAX_POLYPHASE_KERNEL,
    RESAMPLE_CHUNK,
    _resample_pointwise,
    frames_by_channels,
    load_audio,
    resample,
    samples_to_float,
)

TARGET = 16000
#: Rates whose reduced ratio to 16 kHz is large (the reported 16001 and 44101 Hz, a prime,
#: 12345 Hz) and common ones.
ODD_RATES = [16001, 44101, 7919, 12345, 96001]
COMMON_RATES = [8000, 11025, 22050, 44100, 48000, 192000]


class LargestTensor(TorchDispatchMode):
    """Records the element count of the largest tensor any operator returns."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor):
                self.largest = max(self.largest, value.numel())
        return out


def sines(rate: int, seconds: float, freqs: list[float]) -> torch.Tensor:
    t = torch.arange(round(seconds * rate), dtype=torch.float64) / rate
    return sum(torch.sin(2 * math.pi * f * t) for f in freqs) / len(freqs)


@pytest.mark.slow
@pytest.mark.parametrize("rate", ODD_RATES + COMMON_RATES)
def test_resampled_sines_match_the_analytic_signal(rate):
    # Tones inside the filter's passband (a quarter of the lower rate): the output is the
    # signal sampled at 16 kHz, away from the edges (zero beyond the clip).
    freqs = [f for f in (110.0, 440.0, 1000.0, 2900.0) if f < min(rate, TARGET) / 4]
    clip = sines(rate, 0.5, freqs).float()
    with LargestTensor() as mode:
        out = resample(clip, rate, TARGET)
    assert out.dtype == torch.float32 and out.numel() == -(-clip.numel() * TARGET // rate)
    expected = sines(TARGET, out.numel() / TARGET, freqs)
    edge = 40
    error = (out.double() - expected)[edge:-edge].abs().max().item()
    assert error < 2e-3, error
    # Memory stays bounded: no tensor beyond the input/output size and one chunk of filter
    # values, or one polyphase kernel of bounded size (16001 Hz alone would need 256 M).
    assert mode.largest <= max(4 * rate, RESAMPLE_CHUNK, MAX_POLYPHASE_KERNEL), mode.largest


@pytest.mark.parametrize("rate", COMMON_RATES)
def test_the_pointwise_filter_is_the_polyphase_one(rate):
    """The path for odd rates evaluates the very filter that common rates use."""
    x = torch.randn(5000, generator=torch.Generator().manual_seed(rate))
    divisor = math.gcd(rate, TARGET)
    pointwise = _resample_pointwise(x, rate // divisor, TARGET // divisor)
    polyphase = resample(x, rate, TARGET)
    assert pointwise.shape == polyphase.shape
    assert (pointwise - polyphase).abs().max().item() < 2e-4


@pytest.mark.parametrize(("orig", "new"), [(16001, 16000), (16000, 16001), (44101, 16000)])
def test_odd_rates_take_bounded_memory_and_work(orig, new):
    x = torch.randn(orig, generator=torch.Generator().manual_seed(0))
    with LargestTensor() as mode:
        out = resample(x, orig, new)
    assert out.numel() == new
    assert mode.largest <= max(x.numel() + 100, RESAMPLE_CHUNK)


def test_resample_edge_cases_and_bad_rates():
    x = torch.randn(100)
    assert resample(x, 16000, 16000) is x
    assert resample(torch.zeros(0), 44101, TARGET).numel() == 0
    assert resample(torch.ones(1), 44101, TARGET).numel() == 1
    for rate in (0, -8000, 16000.5, True, "16k"):
        with pytest.raises(ValueError, match=r"orig_rate must be a positive integer \(Hz\)"):
            resample(x, rate, TARGET)
    with pytest.raises(ValueError, match=r"waveform must be 1-D \(samples,\), got shape \(2, 50\)"):
        resample(torch.zeros(2, 50), 44101, TARGET)


@pytest.mark.parametrize("rate", [16001, 44101, 8000])
def test_a_file_at_an_odd_rate_loads_at_the_training_rate(tmp_path, rate):
    path = tmp_path / f"tone_{rate}.wav"
    sf.write(path, sines(rate, 1.0, [440.0]).numpy(), rate, subtype="FLOAT")
    waveform = load_audio(path, TARGET)
    assert waveform.numel() == TARGET
    expected = sines(TARGET, 1.0, [440.0])
    assert (waveform.double() - expected)[40:-40].abs().max().item() < 2e-3


# ---------------------------------------------------------------------- integer PCM
@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        (np.array([-32768, 0, 16384, 32767], np.int16), [-1.0, 0.0, 0.5, 32767 / 32768]),
        (np.array([-(2**31), 2**30], np.int32), [-1.0, 0.5]),
        (np.array([-128, 64], np.int8), [-1.0, 0.5]),
        (np.array([0, 128, 192, 255], np.uint8), [-1.0, 0.0, 0.5, 127 / 128]),
        (torch.tensor([-32768, 16384], dtype=torch.int16), [-1.0, 0.5]),
        (torch.tensor([-(2**31), 2**30], dtype=torch.int32), [-1.0, 0.5]),
        (torch.tensor([-128, 64], dtype=torch.int8), [-1.0, 0.5]),
        (torch.tensor([0, 192], dtype=torch.uint8), [-1.0, 0.5]),
        # Float samples are kept as they are, whatever their range.
        (np.array([0.25, -3.0], np.float64), [0.25, -3.0]),
        (np.array([0.5], np.float16), [0.5]),
        (torch.tensor([0.5, 2.0], dtype=torch.bfloat16), [0.5, 2.0]),
        ([0.25, -0.5], [0.25, -0.5]),
    ],
)
def test_integer_samples_are_scaled_as_in_a_wav_file(samples, expected):
    got = samples_to_float(samples)
    assert got.dtype == torch.float32
    assert got.tolist() == pytest.approx(expected, abs=1e-7)


def test_pcm_scaling_matches_soundfile(tmp_path):
    """Every width is scaled as soundfile scales the same samples of a WAV file."""
    rng = np.random.default_rng(0)
    int16 = rng.integers(-(2**15), 2**15, 300).astype(np.int16)
    int32 = rng.integers(-(2**31), 2**31, 300).astype(np.int32)
    uint8 = rng.integers(0, 256, 300).astype(np.uint8)
    cases = [
        ("PCM_16", int16, int16, "int16"),
        ("PCM_32", int32, int32, "int32"),
        ("PCM_24", int32 & ~0xFF, int32 & ~0xFF, "int32"),  # 24-bit audio read as int32
        ("PCM_U8", ((uint8.astype(np.int16) - 128) << 8).astype(np.int16), uint8, None),
    ]
    for subtype, written, given, read_as in cases:
        path = tmp_path / f"{subtype}.wav"
        sf.write(path, written, 8000, subtype)
        as_float, _ = sf.read(path, dtype="float32")
        if read_as is not None:
            given, _ = sf.read(path, dtype=read_as)
        assert samples_to_float(given).numpy() == pytest.approx(as_float, abs=1e-7), subtype


@pytest.mark.parametrize(
    ("samples", "dtype"),
    [
        (np.array([1, 2]), "int64"),
        (torch.tensor([1, 2]), "int64"),
        ([1, 2, 3], "int64"),
        (np.array([1], np.uint16), "uint16"),
        (np.array([1], np.uint32), "uint32"),
        (np.array([True, False]), "bool"),
        (torch.tensor([True]), "bool"),
        (np.array([1j]), "complex128"),
        (torch.tensor([1j]), "complex64"),
        (np.array([None, 1.0]), "object"),
    ],
)
def test_other_sample_types_are_refused_in_one_line(samples, dtype):
    with pytest.raises(ValueError) as info:
        samples_to_float(samples, "clip")
    message = str(info.value)
    assert message.startswith(f"clip has dtype {dtype}, ") and "\n" not in message
    assert "int16" in message


# ---------------------------------------------------------------------- channel layout
@pytest.mark.parametrize(
    "shape", [(48000, 2), (2, 48000), (48000, 1), (1, 48000), (33, 32), (32, 33), (100, 6)]
)
def test_the_short_axis_holds_the_channels(shape):
    samples = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    frames = frames_by_channels(samples)
    channels = min(shape)
    assert frames.shape == (max(shape), channels)
    expected = samples if shape[1] == channels else samples.T
    assert torch.equal(frames, expected)


def test_one_dimensional_audio_is_one_channel():
    samples = torch.randn(500)
    assert torch.equal(frames_by_channels(samples)[:, 0], samples)


@pytest.mark.parametrize(
    ("shape", "words"),
    [
        ((2, 2), ["shape (2, 2) is ambiguous"]),
        ((8, 32), ["shape (8, 32) is ambiguous"]),
        ((MAX_CHANNELS, MAX_CHANNELS), ["ambiguous"]),
        ((48000, 33), ["shape (48000, 33) has no channel axis", "at most 32 channels"]),
        ((40, 40), ["shape (40, 40) has no channel axis"]),
        ((2, 100, 3), ["must be 1-D", "got shape (2, 100, 3)"]),
        ((), ["must be 1-D", "got shape ()"]),
    ],
)
def test_layouts_that_stay_unclear_are_refused_in_one_line(shape, words):
    with pytest.raises(ValueError) as info:
        frames_by_channels(torch.zeros(shape), "clip")
    message = str(info.value)
    assert message.startswith("clip ") and "\n" not in message
    for word in words:
        assert word in message, message
