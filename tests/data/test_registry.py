"""The corpus and feature registries: an unknown name lists the registered ones; a corpus and
a feature kind registered by a test run end to end through the DataModule and the CLI."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from mts_lightning.cli import cli_main
from mts_lightning.data import (
    CORPUS_CLASSES,
    CORPUS_NAMES,
    SCANNERS,
    CorpusSpec,
    FeatureConfig,
    NamingScheme,
    SpectrogramDataModule,
    SpectrogramFeature,
    get_corpus,
    list_corpora,
    list_features,
    register_corpus,
    register_feature,
    restored_settings,
    scan_ravdess,
)
from mts_lightning.data.corpora import protocols, registry
from mts_lightning.data.features import _FEATURES
from tests.helpers.data_fixtures import write_tone

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

# A corpus of whistles: ``<speaker>-<call>.wav``, e.g. ``w07-rise.wav``.
WHISTLES = NamingScheme(
    name="whistles",
    display="Whistles",
    pattern=re.compile(r"^(?P<speaker>w\d\d)-(?P<emotion>rise|fall|flat)$"),
    emotions={"rise": "rising", "fall": "falling", "flat": "flat"},
    example="w07-rise.wav (speaker-call)",
)


@pytest.fixture
def whistles(monkeypatch, tmp_path):
    """The whistle corpus registered for one test, and a folder of it (5 speakers)."""
    monkeypatch.setattr(registry, "_CORPORA", dict(registry._CORPORA))
    register_corpus(
        CorpusSpec("whistles", WHISTLES.scan, protocols.speaker_window, classes=WHISTLES.classes)
    )
    root = tmp_path / "whistles"
    for speaker in range(5):
        for i, call in enumerate(("rise", "fall", "flat")):
            write_tone(root / f"w{speaker:02d}-{call}.wav", 300 + 150 * i, seconds=0.5)
    return root


def test_the_shipped_corpora_are_registered_and_the_old_names_derive_from_them():
    names = ["crema_d", "emodb", "iemocap", "manifest", "ravdess", "savee", "synthetic", "tess"]
    assert list_corpora() == names and sorted(CORPUS_NAMES) == names
    assert set(CORPUS_CLASSES) == set(names) - {"manifest", "synthetic"}
    assert set(SCANNERS) == set(names) - {"synthetic"} and SCANNERS["ravdess"] is scan_ravdess
    assert get_corpus("ravdess").option_defaults == {"include_song": False}
    assert get_corpus("iemocap").paper_protocol is not protocols.speaker_window
    assert get_corpus("tess").paper_protocol is protocols.speaker_halves


def test_an_unknown_corpus_lists_the_registered_ones():
    with pytest.raises(ValueError) as err:
        SpectrogramDataModule(corpus="voxceleb")
    message = str(err.value)
    assert "'voxceleb'" in message
    assert "registered corpora: " + ", ".join(list_corpora()) in message


def test_an_unknown_corpus_in_the_cli_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["mts-lightning"])
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", f"--config={CONFIGS / 'synthetic.yaml'}", "--data.corpus=voxceleb"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "registered corpora: crema_d, emodb" in err and "Traceback" not in err


def test_a_corpus_name_taken_by_another_scanner_is_refused(whistles):
    with pytest.raises(ValueError, match="already registered"):
        register_corpus(CorpusSpec("ravdess", WHISTLES.scan, protocols.speaker_window))
    with pytest.raises(ValueError, match="class_options"):
        CorpusSpec("x", WHISTLES.scan, protocols.speaker_window, class_options=("a",))


def test_a_registered_corpus_runs_through_the_datamodule(whistles):
    assert "whistles" in list_corpora()
    dm = SpectrogramDataModule(
        corpus="whistles",
        root=str(whistles),
        split="paper",
        features=dict(sample_rate=8000, n_fft=256, hop_length=128, n_mels=16),
        duration=None,
        batch_size=4,
    )
    assert dm.class_names == ["rising", "falling", "flat"]
    assert dm.input_shape == (1, 1 + 4000 // 128, 16)
    dm.setup("fit")
    assert dm.split_speakers["test"] == ["w04"] and dm.split_speakers["val"] == ["w03"]
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 1, dm.frames, 16) and set(y.tolist()) <= {0, 1, 2}
    # names outside its scheme are refused like any corpus's
    write_tone(whistles / "w01-hum.wav")
    with pytest.raises(ValueError, match="w01-hum.wav.*Whistles convention.*rise, fall, flat"):
        SpectrogramDataModule(corpus="whistles", root=str(whistles)).setup("fit")


@pytest.mark.slow
def test_a_registered_corpus_runs_through_the_cli(whistles, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["mts-lightning"])
    monkeypatch.chdir(tmp_path)
    cli = cli_main(
        [
            "fit",
            f"--config={CONFIGS / 'synthetic_conv.yaml'}",
            "--data.corpus=whistles",
            f"--data.root={whistles}",
            "--data.duration=0.5",
            "--data.num_folds=5",
            "--data.batch_size=4",
            "--trainer.max_epochs=1",
            "--trainer.max_time=null",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
        ]
    )
    assert cli.model.class_names == ["rising", "falling", "flat"]
    assert cli.trainer.global_step > 0 and "val/UA" in cli.trainer.callback_metrics


class Loudness(SpectrogramFeature):
    """A test feature kind: the log energy of each frame, one bin."""

    settings = ("sample_rate", "hop_length")

    def __init__(self, config: FeatureConfig) -> None:
        super().__init__(config)
        self.transform = nn.Unfold((1, config.hop_length), stride=(1, config.hop_length))

    @classmethod
    def num_bins(cls, config: FeatureConfig) -> int:
        return 1

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        frames = waveform.float().reshape(1, 1, 1, -1)
        energy = self.transform(frames).square().mean(dim=1).T  # (time, 1)
        return torch.log(energy + 1e-6)


def test_a_registered_feature_kind_runs_through_the_datamodule(monkeypatch):
    monkeypatch.setitem(_FEATURES, "loudness", Loudness)
    assert "loudness" in list_features()
    small = dict(num_speakers=5, clips_per_speaker=6, duration=1.0)
    dm = SpectrogramDataModule(
        features=dict(kind="loudness", sample_rate=8000, hop_length=200),
        duration=1.0,
        corpus_options=small,
    )
    assert dm.input_shape == (1, 41, 1)
    assert dm.feature_config.key() == {
        "features": "loudness",
        "sample_rate": 8000,
        "hop_length": 200,
    }
    dm.setup("validate")
    x, _ = next(iter(dm.val_dataloader()))
    assert x.shape[1:] == (1, 41, 1) and torch.isfinite(x).all()
    with pytest.raises(ValueError, match="features.kind must be one of logmel, loudness, stft"):
        FeatureConfig(kind="mfcc")
    register_feature("loudness")(Loudness)  # the same class again: fine
    with pytest.raises(ValueError, match="already registered"):
        register_feature("stft")(Loudness)


def test_restored_settings_derive_from_the_feature_configuration():
    settings = restored_settings()
    assert settings[0] == "corpus"
    assert set(settings) == {
        "corpus",
        *(f"features.{f}" for f in FeatureConfig.__dataclass_fields__),
        "duration",
        "segment_duration",
        "pad_mode",
        "corpus_options.num_classes",
        "label_set",
    }
