"""The DataModule's grouped settings: ``corpus_options`` checked against the corpus's own
declaration, ``features`` (a kind's own settings in ``features.options``), ``augment``; the
flat spellings of earlier versions refused with the grouped YAML; checkpoints written with
the flat settings (tests/fixtures/flat_settings_synthetic.ckpt, a tiny synthetic fit of
commit 63facd2) still evaluated and served; the cache filled by ``prepare_data``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torchaudio.transforms as T
import yaml
from torch import nn

from mts_lightning import EmotionRecognizer
from mts_lightning.cli import cli_main
from mts_lightning.data import SpectrogramDataModule, SyntheticOptions
from mts_lightning.data import features as features_module
from mts_lightning.data.features import FeatureConfig, Log, SpectrogramFeature, register_feature
from mts_lightning.data.settings import grouped_settings
from tests.helpers.tiny_runs import TINY_SYNTHETIC, TINY_TRAINER, make_trainer

REPO = Path(__file__).resolve().parents[2]
SYNTHETIC_YAML = REPO / "configs" / "synthetic.yaml"
FLAT_CHECKPOINT = Path(__file__).parents[1] / "fixtures" / "flat_settings_synthetic.ckpt"
TINY_DATA = dict(
    corpus_options=dict(num_classes=3, num_speakers=4, clips_per_speaker=6, duration=1.0),
    features=dict(sample_rate=8000, n_fft=256, hop_length=128, n_mels=16),
    duration=1.0,
    num_folds=4,
    batch_size=4,
)


def error_line(capsys, args: list[str]) -> str:
    """The one error line with which ``mts-lightning ARGS`` exits (code 2)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli_main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# ---------------------------------------------------------------------- the flat spellings
def test_the_flat_settings_translate_into_their_groups():
    flat = {
        "corpus": "synthetic",
        "features": "stft",
        "n_fft": 512,
        "n_mels": 40,
        "augment": True,
        "time_masks": 1,
        "augment_stretch": [0.9, 1.1],
        "augment_tempos": [0.7, 1.4],
        "synthetic_seed": 3,
        "synthetic_classes": 4,
        "synthetic_speakers": 5,
        "synthetic_clips_per_speaker": 8,
        "synthetic_duration": 2.0,
        "synthetic_train_stretch": [1.0, 1.0],
        "synthetic_test_stretch": [1.5, 2.0],
        "include_song": True,  # not an option of the synthetic corpus: it had no effect
        "batch_size": 8,
    }
    assert grouped_settings(flat) == {
        "corpus": "synthetic",
        "features": {"kind": "stft", "n_fft": 512, "n_mels": 40},
        "corpus_options": {
            "seed": 3,
            "num_classes": 4,
            "num_speakers": 5,
            "clips_per_speaker": 8,
            "duration": 2.0,
            "train_stretch": [1.0, 1.0],
            "test_stretch": [1.5, 2.0],
        },
        "augment": {
            "spec_augment": {"time_masks": 1, "stretch": [0.9, 1.1]},
            "tempos": [0.7, 1.4],
        },
        "batch_size": 8,
    }
    # RAVDESS keeps include_song; augment off drops the mask settings; grouped ones stay.
    assert grouped_settings(
        {"corpus": "ravdess", "include_song": True, "augment": False, "time_masks": 3}
    ) == {
        "corpus": "ravdess",
        "corpus_options": {"include_song": True},
        "augment": {"spec_augment": None},
    }
    grouped = {"corpus": "synthetic", "features": {"kind": "logmel"}, "augment": {"tempos": None}}
    assert grouped_settings(grouped) == grouped


def test_flat_settings_in_a_config_file_are_refused_with_the_grouped_yaml(tmp_path, capsys):
    old = tmp_path / "old.yaml"
    old.write_text(
        "data:\n  corpus: synthetic\n  features: logmel\n  n_mels: 32\n  augment: true\n"
        "  augment_tempos: [0.7, 1.4]\n  synthetic_speakers: 4\n"
    )
    err = error_line(capsys, ["fit", f"--config={SYNTHETIC_YAML}", f"--config={old}"])
    assert err == (
        f"mts-lightning fit: error: ValueError: {old}: data.features, data.n_mels, "
        "data.augment, data.augment_tempos, data.synthetic_speakers are spellings from before "
        "the grouped data settings; write data: {features: {kind: logmel, n_mels: 32}, "
        "corpus_options: {num_speakers: 4}, augment: {spec_augment: {}, tempos: [0.7, 1.4]}}"
    )
    # The YAML it prints is accepted.
    new = tmp_path / "new.yaml"
    grouped = yaml.safe_load(err.split("write data: ")[1])
    new.write_text(yaml.safe_dump({"data": grouped}))
    data = SpectrogramDataModule(**grouped)
    assert data.feature_config.n_mels == 32 and data.corpus_options["num_speakers"] == 4
    assert data.augment.spec_augment is not None and data.augment.tempos == [0.7, 1.4]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--data.n_mels=32"],
            "--data.n_mels: spellings from before the grouped data settings; write data: "
            "{features: {n_mels: 32}} (on the command line: --data.features.n_mels=32)",
        ),
        (
            ["--data.augment_tempos=null"],
            "--data.augment_tempos: spellings from before the grouped data settings; write data: "
            "{augment: {spec_augment: null, tempos: null}} (on the command line: "
            "--data.augment.spec_augment=null --data.augment.tempos=null)",
        ),
        (
            ["--data.synthetic_test_stretch", "[1.6, 2.0]", "--data.features", "stft"],
            "--data.synthetic_test_stretch, --data.features: spellings from before the grouped "
            "data settings; write data: {features: {kind: stft}, corpus_options: {test_stretch: "
            "[1.6, 2.0]}} (on the command line: --data.features.kind=stft "
            "--data.corpus_options.test_stretch=[1.6, 2.0])",
        ),
        (
            ["--data.corpus=ravdess", "--data.include_song=true"],
            "--data.include_song: spellings from before the grouped data settings; write data: "
            "{corpus_options: {include_song: true}} (on the command line: "
            "--data.corpus_options.include_song=true)",
        ),
    ],
)
def test_flat_settings_on_the_command_line_are_refused_with_the_grouped_yaml(args, message, capsys):
    err = error_line(capsys, ["fit", f"--config={SYNTHETIC_YAML}", *args])
    assert err == f"mts-lightning fit: error: ValueError: {message}"


def test_unknown_options_name_the_key_and_the_valid_ones():
    with pytest.raises(ValueError) as err:
        SpectrogramDataModule(corpus_options={"speakers": 4})
    assert str(err.value) == (
        "corpus_options of 'synthetic' takes no argument 'speakers' (did you mean "
        "'num_speakers'?); it takes seed, num_classes, num_speakers, clips_per_speaker, "
        "duration, snr_db, train_stretch, test_stretch"
    )
    with pytest.raises(ValueError, match="num_speakers must be int for corpus_options of"):
        SpectrogramDataModule(corpus_options={"num_speakers": "four"})
    with pytest.raises(ValueError, match="corpus_options of 'ravdess' takes no argument 'seed'"):
        SpectrogramDataModule(corpus="ravdess", root="/x", corpus_options={"seed": 1})
    with pytest.raises(ValueError, match="features takes no argument 'nmels'"):
        SpectrogramDataModule(features={"nmels": 40})
    with pytest.raises(ValueError, match="augment.spec_augment takes no argument 'masks'"):
        SpectrogramDataModule(augment={"spec_augment": {"masks": 2}})
    with pytest.raises(ValueError, match="test_stretch must be .low, high. with 0 < low"):
        SpectrogramDataModule(corpus_options={"test_stretch": (2.0, 1.0)})


def test_the_synthetic_defaults_are_written_once():
    """The DataModule, the corpus's scan and its options all take them from SyntheticOptions."""
    data = SpectrogramDataModule(corpus_options={"num_speakers": 4})
    defaults = SyntheticOptions()
    assert data.corpus_options == {
        **{name: getattr(defaults, name) for name in data.corpus_options},
        "num_speakers": 4,
    }
    corpus = data.load_corpus()
    assert corpus.config == SyntheticOptions(num_speakers=4).config
    assert corpus.stretch == defaults.train_stretch
    assert len(corpus.clips) == 4 * defaults.clips_per_speaker


# ---------------------------------------------------------------------- old checkpoints
@pytest.mark.slow
def test_a_checkpoint_with_the_flat_settings_is_tested_with_its_own_settings(tmp_path):
    """Written by ``mts-lightning fit`` at 63facd2 (n_mels 32, 3 classes of 4 speakers)."""
    saved = torch.load(FLAT_CHECKPOINT, weights_only=True)["datamodule_hyper_parameters"]
    assert saved["n_mels"] == 32 and saved["synthetic_classes"] == 3  # the flat form
    cli = cli_main(
        [
            "test",
            f"--config={SYNTHETIC_YAML}",
            f"--ckpt_path={FLAT_CHECKPOINT}",
            *TINY_SYNTHETIC,
            "--trainer.logger=false",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.enable_progress_bar=false",
        ]
    )
    data = cli.datamodule
    assert data.feature_config.n_mels == 32 and data.corpus_options["num_classes"] == 3
    assert data.input_shape == (1, 32, 32) and data.num_classes == 3
    assert "test/UA" in cli.trainer.callback_metrics


def test_a_checkpoint_with_the_flat_settings_serves_predictions():
    recognizer = EmotionRecognizer.from_checkpoint(FLAT_CHECKPOINT)
    assert recognizer.feature_config == FeatureConfig(n_mels=32)
    prediction = recognizer.predict(torch.randn(16000) * 0.1, 16000)
    assert len(prediction.probabilities) == 3


# ---------------------------------------------------------------------- a new feature kind
@dataclass(frozen=True)
class BandOptions:
    """The settings of the ``bands`` kind beyond FeatureConfig's fields."""

    n_bands: int = 8


class LogBands(SpectrogramFeature):
    """A contributor's feature kind with a setting of its own: the log power of the STFT
    averaged over ``n_bands`` equal frequency bands."""

    settings = ("sample_rate", "n_fft", "hop_length", "win_length", "n_bands")
    Options = BandOptions

    def __init__(self, config: FeatureConfig) -> None:
        super().__init__(config)
        bands = config.setting("n_bands")
        self.transform = nn.Sequential(
            T.Spectrogram(
                n_fft=config.n_fft, win_length=config.window, hop_length=config.hop_length
            ),
            _BandPool(bands),
            Log(1e-6),
        )

    @classmethod
    def num_bins(cls, config: FeatureConfig) -> int:
        return config.setting("n_bands")


class _BandPool(nn.Module):
    """``(freq, time)`` -> ``(bands, time)``: the mean of equal frequency bands."""

    def __init__(self, bands: int) -> None:
        super().__init__()
        self.bands = bands

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.adaptive_avg_pool1d(x.transpose(-2, -1), self.bands).transpose(-2, -1)


@pytest.fixture
def bands_kind(monkeypatch):
    """``bands`` registered as a contributor registers a kind, for this test only."""
    monkeypatch.setattr(features_module, "_FEATURES", dict(features_module._FEATURES))
    register_feature("bands")(LogBands)


@pytest.mark.slow
def test_a_feature_kind_with_a_new_setting_is_one_class(bands_kind, tmp_path, capsys):
    """Registered, set from YAML and the command line, fitted, kept in the cache key and in
    the checkpoint, which ``test`` restores."""
    config = tmp_path / "bands.yaml"
    config.write_text(
        yaml.safe_dump({"data": {"features": {"kind": "bands", "options": {"n_bands": 12}}}})
    )
    fit = cli_main(
        [
            "fit",
            f"--config={SYNTHETIC_YAML}",
            f"--config={config}",
            "--data.features.options.n_bands=16",
            *TINY_SYNTHETIC,
            *TINY_TRAINER,
            f"--trainer.logger.init_args.save_dir={tmp_path / 'logs'}",
        ]
    )
    data = fit.datamodule
    assert data.input_shape == (1, 32, 16) and fit.model.hparams.input_shape == (1, 32, 16)
    assert data.feature_config.key()["n_bands"] == 16
    cached = json.loads(next((tmp_path / "feature-cache").rglob("settings.json")).read_text())
    assert cached["features"] == "bands" and cached["n_bands"] == 16
    best = fit.trainer.checkpoint_callback.best_model_path
    saved = torch.load(best, weights_only=True)["datamodule_hyper_parameters"]
    assert saved["features"]["options"] == {"n_bands": 16}
    tested = cli_main(
        [
            "test",
            f"--config={SYNTHETIC_YAML}",
            f"--ckpt_path={best}",
            *TINY_SYNTHETIC,
            "--trainer.logger=false",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.enable_progress_bar=false",
        ]
    )
    assert tested.datamodule.feature_config.kind == "bands"
    assert tested.datamodule.input_shape == (1, 32, 16)
    err = error_line(
        capsys,
        [
            "fit",
            f"--config={SYNTHETIC_YAML}",
            f"--config={config}",
            "--data.features.options.bands=5",
        ],
    )
    assert err.endswith(
        "features.options of 'bands' takes no argument 'bands' (did you mean 'n_bands'?); it "
        "takes n_bands"
    )


# ---------------------------------------------------------------------- prepare_data
def test_prepare_data_fills_the_cache_that_setup_reads(monkeypatch, tmp_path):
    """Under a trainer, every feature is computed in ``prepare_data`` (one process per node);
    ``setup`` (every process) finds them cached. Test clips are not featurised for fit."""
    computed: list[str] = []
    original = features_module.FeatureExtractor.__call__

    def counted(self, waveform):
        computed.append(hook[0])
        return original(self, waveform)

    hook = ["none"]
    monkeypatch.setattr(features_module.FeatureExtractor, "__call__", counted)
    data = SpectrogramDataModule(**TINY_DATA, augment={"tempos": [0.8, 1.0]})
    for name in ("prepare_data", "setup"):
        method = getattr(data, name)

        def wrapped(*args, _method=method, _name=name, **kwargs):
            hook[0] = _name
            try:
                return _method(*args, **kwargs)
            finally:
                hook[0] = "none"

        monkeypatch.setattr(data, name, wrapped)
    trainer = make_trainer(
        tmp_path, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=2
    )
    from mts_lightning import EmotionClassifier

    model = EmotionClassifier(
        "compact_cnn", class_names=data.class_names, input_shape=data.input_shape
    )
    trainer.fit(model, datamodule=data)
    train, val = len(data.split_indices["train"]), len(data.split_indices["val"])
    # train at tempos 1.0 (plain) and 0.8 (1.0 again is the cached plain features), and val
    assert computed == ["prepare_data"] * (2 * train + val)


class CacheCheckedData(SpectrogramDataModule):
    """Records, per process, whether ``prepare_data`` ran there and how many of the features
    that ``setup`` reads were not cached when it began."""

    def __init__(self, folder: str, **settings) -> None:
        super().__init__(**settings)
        self.folder = folder

    def prepare_data(self) -> None:
        Path(self.folder, f"prepared-rank{self.trainer.global_rank}").touch()
        super().prepare_data()

    def setup(self, stage: str | None = None) -> None:
        corpus, split = self.load_corpus(), self.make_split()
        cache = self._cache(self.corpus, self._featurizer())
        keys = [
            cache.key(corpus.identity(corpus.clips[i])) for p in ("train", "val") for i in split[p]
        ]
        missing = sum(not cache.has(key) for key in keys)
        Path(self.folder, f"setup-rank{self.trainer.global_rank}.json").write_text(
            json.dumps({"stage": stage, "missing": missing, "read": len(keys)})
        )
        super().setup(stage)


@pytest.mark.slow
def test_two_processes_read_the_cache_that_one_filled(tmp_path):
    """DDP (two spawned CPU processes): ``prepare_data`` runs on rank 0 only, and every
    process's ``setup`` finds the features cached (Lightning's barrier in between)."""
    data = CacheCheckedData(str(tmp_path), cache_dir=str(tmp_path / "cache"), **TINY_DATA)
    trainer = make_trainer(
        tmp_path, devices=2, strategy="ddp_spawn", limit_train_batches=1, limit_val_batches=1
    )
    from mts_lightning import EmotionClassifier

    model = EmotionClassifier(
        "compact_cnn", class_names=data.class_names, input_shape=data.input_shape
    )
    trainer.fit(model, datamodule=data)
    assert sorted(p.name for p in tmp_path.glob("prepared-rank*")) == ["prepared-rank0"]
    for rank in range(2):
        report = json.loads((tmp_path / f"setup-rank{rank}.json").read_text())
        assert report["stage"] == "fit" and report["read"] > 0 and report["missing"] == 0, rank
