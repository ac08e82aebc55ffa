"""One model input: a dataset item, the recognizer's input and the exported graphs' input agree."""

import numpy as np
import onnxruntime
import pytest
import torch
from torch import nn

from mts_lightning import EmotionClassifier, EmotionRecognizer, SpectrogramDataModule
from mts_lightning.data.frontend import ModelInput, fix_length
from mts_lightning.export import export_recognizer

#: Clips of 0.5 s: shorter than a 0.8 s model input (padding shows), longer than 0.2 s
#: segments (several segments per clip).
SETTINGS = dict(
    features=dict(sample_rate=8000, n_fft=256, hop_length=128, n_mels=16),
    batch_size=4,
    corpus_options=dict(num_classes=2, num_speakers=5, clips_per_speaker=2, duration=0.5),
)


def checkpoint_of(data: SpectrogramDataModule) -> dict:
    """The parts of a ``mts-lightning fit`` checkpoint that say how the model input is made."""
    return {
        "hyper_parameters": {"input_shape": data.input_shape},
        "datamodule_hyper_parameters": dict(data.hparams),
        "SpectrogramDataModule": data.state_dict(),
    }


def graph_inputs(recognizer: EmotionRecognizer, waveform: torch.Tensor, tmp_path) -> list:
    """The model input ``(frames, freq)`` that the ONNX and TorchScript graphs of
    ``recognizer`` (whose backbone passes its input through, flattened) make of ``waveform``."""
    frames, bins = recognizer.model_input.frames, recognizer.feature_config.num_bins
    onnx = export_recognizer(recognizer, tmp_path / "model.onnx", "onnx")
    session = onnxruntime.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    from_onnx = session.run(["logits"], {"waveform": waveform[None].numpy()})[0]
    script = torch.jit.load(
        str(export_recognizer(recognizer, tmp_path / "model.pt", "torchscript"))
    )
    from_script = script(waveform[None])[0].detach().numpy()
    return [x.reshape(frames, bins) for x in (from_onnx, from_script)]


@pytest.mark.slow
@pytest.mark.parametrize("segment_duration", [None, 0.2], ids=["whole", "segments"])
@pytest.mark.parametrize("pad_mode", ["zeros", "repeat"])
def test_dataset_recognizer_and_exported_graphs_make_the_same_model_input(
    tmp_path, pad_mode, segment_duration
):
    data = SpectrogramDataModule(
        **SETTINGS,
        duration=0.8,
        pad_mode=pad_mode,
        segment_duration=segment_duration,
        segment_overlap=0.5,
        cache_dir=str(tmp_path / "cache"),
    )
    data.setup("test")
    data.test_dataloader()  # sets the training statistics
    item, _ = data.test_dataset[0]
    item = item if segment_duration is not None else item[None]  # (inputs, 1, frames, freq)

    model_input = ModelInput.from_checkpoint(checkpoint_of(data))
    frames, bins = data.input_shape[1:]
    classes = [f"c{i}" for i in range(frames * bins)]  # one "class" per input value
    model = EmotionClassifier(backbone=nn.Flatten(), class_names=classes, confusion_matrix=False)
    recognizer = EmotionRecognizer(model, data.feature_config, model_input)
    corpus = data.load_corpus("test")
    clip = corpus.clips[data.make_split()["test"][0]]
    waveform = corpus.load_waveform(
        clip, data.feature_config.sample_rate, data.feature_config.n_fft
    )
    windows = recognizer._windows(waveform)

    if segment_duration is None:  # one input, padded as pad_mode says
        assert len(item) == 1 and recognizer._features(waveform).shape[0] < frames
    else:
        assert len(item) > 1
    assert item.shape == windows.shape
    assert torch.allclose(item, windows, atol=1e-5)
    # The graphs score the first input of a clip (the recognizer averages all of them).
    for graph_input in graph_inputs(recognizer, waveform, tmp_path):
        assert np.allclose(graph_input, windows[0, 0].numpy(), atol=1e-4)


def test_fix_length_in_a_graph_equals_fix_length_in_eager_code():
    clip = torch.arange(12.0).reshape(6, 2)
    for pad_mode in ("zeros", "repeat"):
        traced = torch.jit.trace(
            lambda x, mode=pad_mode: fix_length(
                x, 4, pad_mode=mode, length=torch.ones_like(x[:, 0], dtype=torch.long).sum()
            ),
            clip,
        )
        for frames in (1, 3, 6):
            assert torch.equal(traced(clip[:frames]), fix_length(clip[:frames], 4, 0, pad_mode))


def test_model_input_refuses_bad_settings():
    with pytest.raises(ValueError, match="pad_mode must be one of zeros, repeat, got 'wrap'"):
        ModelInput(4, "wrap")
    with pytest.raises(ValueError, match="frames must be >= 1, got 0"):
        ModelInput(0)
    with pytest.raises(ValueError, match=r"segment_overlap must be in \[0, 1\), got 1"):
        ModelInput(4, segment_overlap=1)
    with pytest.raises(RuntimeError, match="normalisation statistics are not set"):
        ModelInput(4).normalise(torch.ones(3, 2))
    with pytest.raises(ValueError, match="checkpoint lacks the data settings"):
        ModelInput.from_checkpoint({"hyper_parameters": {"input_shape": (1, 4, 2)}})
