"""ONNX and TorchScript export: every zoo model, waveform and features input, checked
against PyTorch on five lengths; clips of every length as the recognizer treats them;
metadata; modules that cannot export are named."""

from __future__ import annotations

import json
import warnings

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch import nn

from mts_lightning import EmotionClassifier, EmotionRecognizer
from mts_lightning.data.features import FeatureConfig, analysis_waveform
from mts_lightning.data.frontend import ModelInput
from mts_lightning.export import ExportError, export_recognizer
from mts_lightning.models import list_models
from mts_lightning.nn import MultiscaleConv2d
from mts_lightning.nn.options import FMAP_ALIGN_MODES, OUTPUT_TYPES

FEATURES = FeatureConfig(n_fft=256, hop_length=128, n_mels=32)
FRAMES = 48
CLASSES = ["angry", "happy", "sad"]


def make_recognizer(
    backbone: str = "compact_cnn",
    pad_mode: str = "zeros",
    features: FeatureConfig = FEATURES,
    frames: int = FRAMES,
    **backbone_kwargs,
) -> EmotionRecognizer:
    torch.manual_seed(0)
    model = EmotionClassifier(
        backbone=backbone,
        backbone_kwargs=backbone_kwargs,
        class_names=CLASSES,
        input_shape=(1, frames, features.num_bins),
        confusion_matrix=False,
    )
    generator = torch.Generator().manual_seed(1)
    mean = torch.randn(features.num_bins, generator=generator)
    std = torch.rand(features.num_bins, generator=generator) + 0.5
    return EmotionRecognizer(model, features, ModelInput(frames, pad_mode, mean=mean, std=std))


def onnx_probabilities(path, x: torch.Tensor, name: str) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {name: x.numpy()})[0]


@pytest.mark.slow
@pytest.mark.parametrize("input_kind", ["waveform", "features"])
def test_onnx_export_matches_the_recognizer(tmp_path, input_kind):
    recognizer = make_recognizer(conv_type="conv")
    path = export_recognizer(recognizer, tmp_path / "model.onnx", "onnx", input_kind)
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    settings = json.loads(meta["mts_lightning"])
    assert settings["class_names"] == CLASSES and settings["input"] == input_kind
    assert settings["frames"] == FRAMES and settings["features"]["n_mels"] == 32
    assert settings["normalisation"]["applied_inside"] == (input_kind == "waveform")
    # Waveforms of any length through the file give the recognizer's own probabilities.
    for seconds in (0.3, 1.0, 2.7):
        wave = 0.1 * torch.randn(int(seconds * FEATURES.sample_rate))
        expected = recognizer.predict(wave, FEATURES.sample_rate).probabilities
        if input_kind == "waveform":
            x = wave[None]
        else:
            x = recognizer._features(wave)[None]
        got = onnx_probabilities(path, x, input_kind)[0]
        assert got == pytest.approx([expected[c] for c in CLASSES], abs=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_a_repeat_padding_model_exports_with_its_padding(tmp_path, fmt):
    recognizer = make_recognizer(pad_mode="repeat", conv_type="mts")
    path = export_recognizer(recognizer, tmp_path / f"model.{fmt}", fmt, "features")
    # Shorter than the input (repeated), as long, and longer (cropped).
    for frames in (7, FRAMES, FRAMES + 21):
        x = torch.randn(2, frames, FEATURES.num_bins)
        repeated = x[:, torch.arange(FRAMES) % frames]
        with torch.no_grad():
            expected = torch.softmax(recognizer.model.backbone(repeated[:, None]), dim=-1)
        if fmt == "onnx":
            got = torch.from_numpy(onnx_probabilities(path, x, "features"))
        else:
            got = torch.jit.load(str(path))(x)[1]
        assert torch.allclose(got, expected, atol=1e-4)
    if fmt == "onnx":
        meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        assert json.loads(meta["mts_lightning"])["pad_mode"] == "repeat"


@pytest.mark.slow
def test_torchscript_export_and_metadata(tmp_path):
    recognizer = make_recognizer(conv_type="conv")
    path = export_recognizer(recognizer, tmp_path / "model.pt", "torchscript", "waveform")
    extra = {"mts_lightning.json": ""}
    loaded = torch.jit.load(str(path), _extra_files=extra)
    assert json.loads(extra["mts_lightning.json"])["class_names"] == CLASSES
    wave = 0.1 * torch.randn(3, 9000)
    logits, probabilities = loaded(wave)
    assert logits.shape == probabilities.shape == (3, 3)
    for row, one in zip(probabilities, wave, strict=True):
        expected = recognizer.predict(one, FEATURES.sample_rate).probabilities
        assert row.tolist() == pytest.approx([expected[c] for c in CLASSES], abs=1e-4)


# ---------------------------------------------------------------------- clips of any length
#: The training defaults (n_fft 1024, hop 512), so that the lengths below are those around
#: the STFT's reflect padding (512) and analysis frame (1024) that broke exported graphs.
DEFAULT_FEATURES = FeatureConfig(n_mels=32)
SHORT_FRAMES = 12
LENGTHS = [1, 2, 100, 255, 256, 257, 511, 512, 513, 800, 1023, 1024, 1025, 16000]


@pytest.fixture(scope="module", params=["zeros", "repeat"])
def exported(request, tmp_path_factory):
    """A recognizer of the default features and its ONNX and TorchScript graphs, per pad_mode:
    ``(recognizer, {format: run})`` where ``run`` maps waveforms to probabilities."""
    recognizer = make_recognizer(
        pad_mode=request.param, features=DEFAULT_FEATURES, frames=SHORT_FRAMES, conv_type="conv"
    )
    folder = tmp_path_factory.mktemp(f"exported-{request.param}")
    onnx_path = export_recognizer(recognizer, folder / "model.onnx", "onnx", "waveform")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
        path = export_recognizer(recognizer, folder / "model.pt", "torchscript")
        script = torch.jit.load(str(path))
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    runs = {
        "onnx": lambda x: session.run(["probabilities"], {"waveform": x.numpy()})[0],
        "torchscript": lambda x: script(x)[1].detach().numpy(),
    }
    return recognizer, runs


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_clips_of_every_length_are_treated_as_the_recognizer_does(exported, fmt, one_thread):
    """Reported: <= 512 samples failed (reflect padding), 513-1023 differed by up to 0.08."""
    recognizer, runs = exported
    generator = torch.Generator().manual_seed(2)
    for length in LENGTHS:
        clips = 0.3 * torch.randn(2, length, generator=generator)
        expected = np.array(
            [list(recognizer.predict(clip, 16000).probabilities.values()) for clip in clips]
        )
        batch_of_one = runs[fmt](clips[:1])
        batch = runs[fmt](clips)
        assert batch_of_one == pytest.approx(expected[:1], abs=1e-5), length
        assert batch == pytest.approx(expected, abs=1e-5), length


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_an_empty_waveform_is_refused_like_the_recognizer_refuses_it(exported, fmt):
    recognizer, runs = exported
    with pytest.raises(ValueError, match=r"^waveform has no samples \(shape \(0,\)\)$"):
        recognizer.predict(torch.zeros(0), 16000)
    with pytest.raises(ValueError, match=r"^waveform has no samples \(shape \(2, 0\)\): at least"):
        analysis_waveform(torch.zeros(2, 0), recognizer.feature_config)
    # A graph cannot word an error: it fails (an index out of range) rather than answer.
    with pytest.raises(Exception, match="index|out of|bounds"):
        runs[fmt](torch.zeros(1, 0))


@pytest.mark.parametrize(
    "features",
    [
        DEFAULT_FEATURES,
        FeatureConfig(kind="stft", n_fft=256, hop_length=100, win_length=200),
        FeatureConfig(n_fft=255, hop_length=64, n_mels=16),
    ],
    ids=["default", "stft-short-window", "odd-n_fft"],
)
def test_the_short_clip_rule_is_a_zero_pad_to_one_analysis_frame(features):
    """``analysis_waveform`` (graph-safe) gives the frames of the zero-padded clip's features."""
    front_end = features.kind_class(features).eval()
    generator = torch.Generator().manual_seed(3)
    n_fft = features.n_fft
    for length in [1, 2, n_fft // 2 - 1, n_fft // 2, n_fft // 2 + 1, n_fft - 1, n_fft, 5000]:
        clips = torch.randn(2, length, generator=generator)
        extended, frames = analysis_waveform(clips, features)
        padded = nn.functional.pad(clips, (0, max(0, n_fft - length)))
        expected = front_end(padded)
        assert int(frames) == expected.shape[1] == features.num_frames(max(length, n_fft))
        got = front_end(extended)[:, : int(frames)]
        assert torch.allclose(got, expected, atol=1e-5), length


#: Zoo models without convolutions, hence without ``conv_type``.
CONV_FREE = {"bag_of_frames"}


def zoo_cases() -> list:
    cases = []
    for name in list_models():
        if name in CONV_FREE:
            cases.append(pytest.param(name, {}, id=name))
        else:
            cases.append(pytest.param(name, {"conv_type": "conv"}, id=f"{name}-conv"))
            cases.append(pytest.param(name, {"conv_type": "mts"}, id=f"{name}-mts"))
    return cases


@pytest.mark.slow
@pytest.mark.parametrize(("name", "kwargs"), zoo_cases())
def test_every_zoo_model_exports(tmp_path, name, kwargs):
    """Conv and MTS (frozen) flavours of every zoo model; each export is checked against
    PyTorch on three lengths by ``export_recognizer`` itself."""
    recognizer = make_recognizer(name, **kwargs)
    export_recognizer(recognizer, tmp_path / "model.onnx", "onnx", "features")
    export_recognizer(recognizer, tmp_path / "model.pt", "torchscript", "features")


@pytest.mark.slow
@pytest.mark.parametrize("fmap_align", FMAP_ALIGN_MODES)
@pytest.mark.parametrize("output_type", OUTPUT_TYPES)
def test_every_mts_output_type_and_alignment_exports(tmp_path, output_type, fmap_align):
    mts = {"output_type": output_type, "fmap_align": fmap_align}
    # Only the paper networks take concat_fmaps (it multiplies the time axis at every layer).
    backbone = "paper_2conv" if output_type == "concat_fmaps" else "compact_cnn"
    recognizer = make_recognizer(backbone, conv_type="mts", mts=mts)
    assert all(m.frozen for m in recognizer.model.modules() if isinstance(m, MultiscaleConv2d))
    path = export_recognizer(recognizer, tmp_path / "model.onnx", "onnx", "waveform")
    wave = 0.1 * torch.randn(1, 20000)
    expected = recognizer.predict(wave[0], FEATURES.sample_rate).probabilities
    got = onnx_probabilities(path, wave, "waveform")[0]
    assert got == pytest.approx([expected[c] for c in CLASSES], abs=1e-4)
    export_recognizer(recognizer, tmp_path / "model.pt", "torchscript", "waveform")


class NumpyTanh(nn.Module):
    """A user's module that leaves PyTorch for numpy: a trace would bake its output in."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.tanh(x.detach().numpy()))


class Bessel(nn.Module):
    """A user's module with an operator that ONNX has no counterpart for."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.special.bessel_j0(x)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fmt", "module"), [("onnx", Bessel), ("torchscript", NumpyTanh)], ids=["onnx", "torchscript"]
)
def test_a_module_that_cannot_export_is_named_and_nothing_is_written(tmp_path, fmt, module):
    recognizer = make_recognizer(conv_type="conv")
    recognizer.model.backbone.features.insert(1, module())
    pattern = rf"module 'backbone\.features\.1' \(.*{module.__name__}\)"
    with pytest.raises(ExportError, match=pattern):
        export_recognizer(recognizer, tmp_path / "model", fmt, "features")
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments(tmp_path):
    recognizer = make_recognizer(conv_type="conv")
    with pytest.raises(ValueError, match="format must be one of onnx, torchscript"):
        export_recognizer(recognizer, tmp_path / "m", "tflite")
    with pytest.raises(ValueError, match="input_kind must be one of waveform, features"):
        export_recognizer(recognizer, tmp_path / "m", "onnx", "mel")
    with pytest.raises(ValueError, match="does not exist"):
        export_recognizer(recognizer, tmp_path / "no" / "m.onnx")


@pytest.mark.slow
@pytest.mark.parametrize("pooling", ["stats", "attentive_stats"])
def test_statistics_pooling_heads_export(tmp_path, pooling):
    """The compact CNN's statistics heads, with MTS layers, checked on three lengths."""
    recognizer = make_recognizer("compact_cnn", conv_type="mts", pooling=pooling)
    export_recognizer(recognizer, tmp_path / "model.onnx", "onnx", "features")
    export_recognizer(recognizer, tmp_path / "model.pt", "torchscript", "features")
