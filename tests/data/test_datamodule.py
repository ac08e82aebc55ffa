"""SpectrogramDataModule end to end: synthetic corpus, batches, cache, normalisation,
bad files, augmentation, checkpoints and prediction."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import soundfile as sf
import torch
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from mts_lightning.data import (
    BadAudioError,
    DataError,
    FeatureExtractor,
    SpectrogramDataModule,
    SyntheticConfig,
    SyntheticCorpus,
    default_cache_dir,
)
from mts_lightning.data.frontend import fix_length
from tests.helpers.data_fixtures import (
    make_crema_d_folder,
    make_manifest,
    make_ravdess_folder,
    make_tess_folder,
    write_bad_file,
    write_stereo,
    write_tone,
)

SYNTHETIC = dict(num_classes=4, num_speakers=5, clips_per_speaker=8, duration=1.0)
SMALL = dict(
    features=dict(sample_rate=8000, n_fft=256, hop_length=128, n_mels=32),
    duration=1.0,
    batch_size=8,
    corpus_options=SYNTHETIC,
)
FIXTURE = dict(
    features=dict(sample_rate=8000, n_fft=256, hop_length=128, n_mels=24),
    duration=0.3,
    batch_size=4,
)


def small(**corpus_options) -> dict:
    """SMALL with other synthetic corpus options."""
    return {**SMALL, "corpus_options": {**SYNTHETIC, **corpus_options}}


def with_features(settings: dict, **features) -> dict:
    """``settings`` with other feature settings."""
    return {**settings, "features": {**settings["features"], **features}}


@pytest.fixture
def count_features(monkeypatch):
    """Count feature computations (FeatureExtractor calls) in this process."""
    calls = []
    original = FeatureExtractor.__call__

    def counted(self, waveform):
        calls.append(1)
        return original(self, waveform)

    monkeypatch.setattr(FeatureExtractor, "__call__", counted)
    return calls


def cached_entries():
    return sorted(default_cache_dir().rglob("*.npy"))


def test_attributes_right_after_construction_without_feature_work():
    dm = SpectrogramDataModule()
    assert dm.num_classes == 6 and dm.class_names == [f"pattern_{c}" for c in range(6)]
    assert dm.input_shape == (1, 1 + 48000 // 512, 64)
    assert SpectrogramDataModule(features={"kind": "stft"}).input_shape == (1, 94, 513)
    assert SpectrogramDataModule(corpus="ravdess", root="/nowhere").num_classes == 8
    assert not default_cache_dir().exists()


def test_synthetic_corpus_is_deterministic_from_its_seed():
    a, b = SyntheticCorpus(SyntheticConfig(seed=0)), SyntheticCorpus(SyntheticConfig(seed=0))
    other = SyntheticCorpus(SyntheticConfig(seed=1))
    for index in (0, 17, 301):
        assert np.array_equal(a.render(index, 8000), b.render(index, 8000))
        assert not np.allclose(a.render(index, 8000), other.render(index, 8000))
    assert [c.label for c in a.clips] == [c.label for c in other.clips]
    assert len({c.speaker for c in a.clips}) == 10 and len(a.clips) == 720


def test_synthetic_test_stretch_range_is_separate():
    config = SyntheticConfig(seed=0)
    slow, fast = SyntheticCorpus(config, (1.5, 1.5)), SyntheticCorpus(config, (0.6, 0.6))

    def active_seconds(wave):
        envelope = np.abs(wave).reshape(-1, 80).max(axis=1)
        return (envelope > 0.2 * envelope.max()).sum() * 80 / 8000

    ratios = [
        active_seconds(slow.render(i, 8000)) / active_seconds(fast.render(i, 8000))
        for i in range(8)
    ]
    assert 1.8 < float(np.median(ratios)) < 3.2  # 1.5 / 0.6 = 2.5
    dm = SpectrogramDataModule(**small(test_stretch=(1.5, 2.0)))
    assert dm.load_corpus("test").stretch == (1.5, 2.0)
    assert dm.load_corpus("val").stretch == dm.load_corpus("train").stretch == (0.6, 1.6)
    clip = dm.load_corpus().clips[0]
    assert dm.load_corpus("test").identity(clip) != dm.load_corpus("train").identity(clip)


def test_batches_splits_and_class_weights():
    dm = SpectrogramDataModule(**SMALL)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 1, dm.input_shape[1], 32) and x.dtype == torch.float32
    assert y.shape == (8,) and y.dtype == torch.int64
    parts = {name: set(speakers) for name, speakers in dm.split_speakers.items()}
    assert not parts["train"] & parts["val"] and not parts["train"] & parts["test"]
    assert len(parts["train"] | parts["val"] | parts["test"]) == 5
    assert len(dm.train_dataset) == 8 * len(parts["train"])
    assert torch.allclose(dm.class_weights, torch.ones(4))
    assert dm.test_dataset is None


def test_normalisation_statistics_come_from_the_training_split_only():
    dm = SpectrogramDataModule(**SMALL)
    dm.setup("fit")
    dm.train_dataloader()
    train = np.concatenate([np.load(item.feature) for item in dm.train_dataset.items])
    assert np.allclose(dm.model_input.mean.numpy(), train.mean(axis=0), atol=1e-4)
    assert np.allclose(dm.model_input.std.numpy(), train.std(axis=0), atol=1e-3)
    everything = np.concatenate([train] + [np.load(item.feature) for item in dm.val_dataset.items])
    assert not np.allclose(dm.model_input.mean.numpy(), everything.mean(axis=0), atol=1e-4)
    # the same statistics when only the test stage is set up
    fresh = SpectrogramDataModule(**SMALL)
    fresh.setup("test")
    fresh.test_dataloader()
    assert torch.equal(fresh.model_input.mean, dm.model_input.mean)
    assert fresh.val_dataset is None and len(fresh.test_dataset) == 8


def test_second_run_hits_the_cache(count_features):
    first = SpectrogramDataModule(**SMALL)
    first.setup("fit")
    batch = next(iter(first.val_dataloader()))
    assert len(count_features) == 40 - 8  # train + val clips
    entries = cached_entries()
    second = SpectrogramDataModule(**SMALL)
    second.setup("fit")
    again = next(iter(second.val_dataloader()))
    assert len(count_features) == 32 and cached_entries() == entries
    assert torch.equal(batch[0], again[0])


@pytest.mark.parametrize("num_workers", [0, 1])
def test_filling_the_cache_draws_no_global_random_number(num_workers, count_features):
    """A fit that fills the cache trains on the random numbers of one that finds it filled."""
    data = SpectrogramDataModule(**{**SMALL, "num_workers": num_workers})
    torch.manual_seed(7)
    data.setup("fit")
    assert count_features or num_workers  # computed here, or in the worker
    after_fill = torch.rand(3)
    torch.manual_seed(7)
    SpectrogramDataModule(**{**SMALL, "num_workers": num_workers}).setup("fit")
    assert torch.equal(torch.rand(3), after_fill)


def test_a_changed_feature_setting_never_reads_a_stale_cache(count_features):
    SpectrogramDataModule(**SMALL).setup("validate")
    assert len(count_features) == 8
    changed = SpectrogramDataModule(**with_features(SMALL, n_mels=24))
    changed.setup("validate")
    assert len(count_features) == 16
    assert next(iter(changed.val_dataloader()))[0].shape[-1] == 24
    assert len(count_features) == 16 + 24  # the statistics need the training features
    SpectrogramDataModule(**small(seed=5)).setup("validate")
    assert len(count_features) == 48
    SpectrogramDataModule(**{**SMALL, "duration": 0.5}).setup("validate")  # length: no new features
    assert len(count_features) == 48


def test_a_changed_file_is_recomputed(tmp_path, count_features):
    make_ravdess_folder(tmp_path / "ravdess", actors=range(1, 6), emotions=(1, 2))
    dm = SpectrogramDataModule(corpus="ravdess", root=str(tmp_path / "ravdess"), **FIXTURE)
    dm.setup("test")
    assert len(count_features) == 2
    test_file = Path(dm.load_corpus().clips[dm.split_indices["test"][0]].path)
    write_tone(test_file, freq=900.0, seconds=0.4)
    again = SpectrogramDataModule(corpus="ravdess", root=str(tmp_path / "ravdess"), **FIXTURE)
    again.setup("test")
    assert len(count_features) == 3


def test_an_interrupted_cache_fill_leaves_no_corrupt_entry(monkeypatch):
    saves = []
    original = np.save

    def interrupted_save(file, array, *args, **kwargs):
        saves.append(1)
        if len(saves) == 5:
            file.write(b"\x93NUMPY partial")
            raise KeyboardInterrupt
        original(file, array, *args, **kwargs)

    monkeypatch.setattr(np, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        SpectrogramDataModule(**SMALL).setup("fit")
    monkeypatch.setattr(np, "save", original)
    entries = cached_entries()
    assert len(entries) == 4
    assert all(np.load(p).shape[1] == 32 for p in entries)
    assert not [p for p in default_cache_dir().rglob("*") if p.name.endswith(".tmp")]
    dm = SpectrogramDataModule(**SMALL)
    dm.setup("fit")
    assert len(cached_entries()) == 32


BAD_KINDS = {
    "empty": "empty file",
    "truncated": "truncated",
    "garbage": "unreadable",
    "silent": "silent",
    "short": "too short",
}


def make_ravdess_with_bad_files(root, kinds=tuple(BAD_KINDS)):
    """Ten good files, plus one bad file of each kind under a valid official name."""
    make_ravdess_folder(root, actors=range(1, 6), emotions=(1, 2))
    return {
        kind: write_bad_file(
            root / f"Actor_{actor:02d}" / f"03-01-0{actor + 2}-01-01-01-{actor:02d}.wav", kind
        )
        for actor, kind in enumerate(BAD_KINDS, start=1)
        if kind in kinds
    }


@pytest.mark.parametrize("kind", list(BAD_KINDS))
def test_a_bad_audio_file_is_a_clear_error(tmp_path, kind):
    bad = make_ravdess_with_bad_files(tmp_path, kinds=(kind,))[kind]
    dm = SpectrogramDataModule(corpus="ravdess", root=str(tmp_path), split="random", **FIXTURE)
    with pytest.raises(BadAudioError, match=BAD_KINDS[kind]) as err:
        dm.setup()
    assert str(bad) in str(err.value) and "skip_bad_files=True" in str(err.value)


def test_bad_files_are_skipped_with_a_report_on_every_run(tmp_path):
    bad = make_ravdess_with_bad_files(tmp_path)
    write_tone(tmp_path / "Actor_01" / "not-an-official-name.wav")
    for _ in range(2):  # the second run reads the cache and still reports every skipped file
        dm = SpectrogramDataModule(
            corpus="ravdess", root=str(tmp_path), skip_bad_files=True, **FIXTURE
        )
        with pytest.warns(UserWarning, match="skipped 6 bad files") as record:
            dm.setup()
        report = str(record[0].message)
        for kind, path in bad.items():
            assert f"{path}: " in report and BAD_KINDS[kind] in report
        assert "outside the RAVDESS convention" in report
        used = {
            item.feature
            for ds in (dm.train_dataset, dm.val_dataset, dm.test_dataset)
            for item in ds.items
        }
        assert len(used) == 10
        assert len(dm.skipped_files) == 6


def test_bad_corpus_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SpectrogramDataModule(corpus="ravdess", root=str(tmp_path / "nowhere")).setup("fit")
    with pytest.raises(ValueError, match="RAVDESS needs `root`"):
        SpectrogramDataModule(corpus="ravdess").setup("fit")
    with pytest.raises(ValueError, match="corpus must be one of"):
        SpectrogramDataModule(corpus="voxceleb")
    with pytest.raises(FileNotFoundError, match="manifest root"):
        SpectrogramDataModule(corpus="manifest", root=str(tmp_path / "none.csv"))
    make_tess_folder(tmp_path / "tess", words=("back", "bar", "base", "bath"))
    tess = SpectrogramDataModule(corpus="tess", root=str(tmp_path / "tess"), **FIXTURE)
    with pytest.raises(ValueError, match="at least 3 speakers.*OAF, YAF"):
        tess.setup("fit")
    paper = SpectrogramDataModule(
        corpus="tess", root=str(tmp_path / "tess"), split="paper", **FIXTURE
    )
    paper.setup("fit")
    assert paper.split_speakers["train"] == paper.split_speakers["test"] == ["OAF", "YAF"]


def test_class_weights_follow_training_label_counts(tmp_path):
    rows = []
    for speaker in ("a", "b", "c"):
        for i, label in enumerate(["x"] * 6 + ["y"] * 2):
            write_tone(tmp_path / speaker / f"{i}.wav", 300 + 40 * i)
            rows.append({"path": f"{speaker}/{i}.wav", "label": label, "speaker": speaker})
    manifest = make_manifest(tmp_path, rows)
    dm = SpectrogramDataModule(corpus="manifest", root=str(manifest), num_folds=3, **FIXTURE)
    assert dm.class_names == ["x", "y"]
    dm.setup("fit")
    assert torch.allclose(dm.class_weights, torch.tensor([0.5, 1.5]))


def test_augmentation_only_on_the_training_split():
    dm = SpectrogramDataModule(
        **SMALL, augment={"spec_augment": {"time_mask_frames": 4, "freq_mask_bins": 4}}
    )
    dm.setup("fit")
    dm.train_dataloader()
    assert dm.train_dataset.augment is not None and dm.val_dataset.augment is None
    assert not torch.equal(dm.train_dataset[0][0], dm.train_dataset[0][0])
    assert torch.equal(dm.val_dataset[0][0], dm.val_dataset[0][0])


def test_segments_with_overlap(tmp_path):
    make_ravdess_folder(tmp_path, actors=range(1, 6), emotions=(1, 2), seconds=1.0)
    dm = SpectrogramDataModule(
        corpus="ravdess", root=str(tmp_path), segment_duration=0.4, segment_overlap=0.5, **FIXTURE
    )
    assert dm.input_shape == (1, 1 + 3200 // 128, 24)
    dm.setup("fit")
    frames = 1 + 8000 // 128
    per_clip = math.ceil((frames - dm.frames) / round(dm.frames * 0.5)) + 1
    assert len(dm.train_dataset) == 6 * per_clip
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape[2] == dm.frames


def test_workers_fill_the_cache_and_load_batches():
    dm = SpectrogramDataModule(**SMALL, num_workers=2)
    dm.setup("validate")
    loader = dm.val_dataloader()
    assert loader.persistent_workers and not loader.pin_memory
    x, y = next(iter(loader))
    assert x.shape[0] == 8 and len(cached_entries()) == 40 - 8


class TinyClassifier(pl.LightningModule):
    def __init__(self, input_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self.net(x), y))

    def test_step(self, batch, batch_idx):
        self.validation_step(batch, batch_idx)

    def predict_step(self, batch, batch_idx):
        x, paths = batch
        return self.net(x).argmax(1), paths

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def make_trainer(tmp_path):
    return pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=CSVLogger(tmp_path / "logs"),
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )


def test_trainer_logs_split_and_predicts_from_a_checkpoint_without_the_corpus(tmp_path):
    corpus = tmp_path / "ravdess"
    make_ravdess_folder(corpus, actors=range(1, 7), emotions=(1, 3, 5))
    dm = SpectrogramDataModule(corpus="ravdess", root=str(corpus), num_folds=3, **FIXTURE)
    model = TinyClassifier(dm.input_shape, dm.num_classes)
    trainer = make_trainer(tmp_path)
    trainer.fit(model, datamodule=dm)
    logged = json.loads((Path(trainer.log_dir) / "split_speakers.json").read_text())
    assert logged == dm.split_speakers and len(logged["test"]) == 2
    checkpoint = tmp_path / "model.ckpt"
    trainer.save_checkpoint(checkpoint)
    trainer.test(
        model,
        datamodule=SpectrogramDataModule(
            corpus="ravdess", root=str(corpus), num_folds=3, **FIXTURE
        ),
    )

    new_audio = [write_tone(tmp_path / "new" / f"{i}.wav", 300 + 100 * i) for i in range(3)]
    shutil.rmtree(corpus)
    predict = SpectrogramDataModule(
        corpus="ravdess", root=str(corpus), predict_paths=[str(tmp_path / "new")], **FIXTURE
    )
    outputs = make_trainer(tmp_path).predict(model, datamodule=predict, ckpt_path=checkpoint)
    assert predict.predict_files == [str(p) for p in new_audio]
    assert [p for _, paths in outputs for p in paths] == predict.predict_files
    assert torch.equal(predict.model_input.mean, dm.model_input.mean)


def test_state_dict_round_trip_and_predict_path_errors(tmp_path):
    dm = SpectrogramDataModule(**SMALL)
    dm.setup("validate")
    dm.val_dataloader()
    restored = SpectrogramDataModule(**SMALL)
    restored.load_state_dict(dm.state_dict())
    assert torch.equal(restored.model_input.std, dm.model_input.std)
    with pytest.raises(ValueError, match="frequency bins"):
        SpectrogramDataModule(**with_features(SMALL, n_mels=20)).load_state_dict(dm.state_dict())
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SpectrogramDataModule(**SMALL, predict_paths=[str(tmp_path / "nothing.wav")]).setup(
            "predict"
        )
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no audio files"):
        SpectrogramDataModule(**SMALL, predict_paths=[str(tmp_path / "empty")]).setup("predict")
    with pytest.raises(ValueError, match="predict_paths"):
        SpectrogramDataModule(**SMALL).setup("predict")


# ---------------------------------------------------------------------- pad to the longest clip
def ravdess_with_lengths(root, seconds):
    """One clip per actor (emotions 1 and 2), actor ``a`` lasting ``seconds[a - 1]``."""
    files = []
    for actor, length in enumerate(seconds, start=1):
        files += make_ravdess_folder(root, actors=[actor], emotions=(1, 2), seconds=length)
    return files


def test_duration_none_pads_to_the_longest_usable_clip(tmp_path, recwarn):
    files = ravdess_with_lengths(tmp_path, [0.3, 0.5, 0.4, 0.3, 0.3])
    settings = {**FIXTURE, "duration": None}
    dm = SpectrogramDataModule(corpus="ravdess", root=str(tmp_path), **settings)
    assert dm.input_shape == (1, 1 + 4000 // 128, 24)  # 0.5 s at 8 kHz
    assert not [w for w in recwarn if "median" in str(w.message)]
    # Longer files that cannot be used: an LFS pointer (header) and a silent one (content).
    write_bad_file(files[2], "lfs_pointer")  # files[3] is the other 0.5-s clip
    sf.write(str(files[4]), np.zeros(8000, np.float32), 8000, subtype="PCM_16")  # 1 s, silent
    with pytest.raises(BadAudioError, match="Git LFS pointer") as err:
        SpectrogramDataModule(corpus="ravdess", root=str(tmp_path), **settings)
    assert str(files[2]) in str(err.value)
    dm = SpectrogramDataModule(
        corpus="ravdess", root=str(tmp_path), skip_bad_files=True, **settings
    )
    assert dm.input_shape[1] == 1 + 4000 // 128
    assert {s.path for s in dm.skipped_files} == {str(files[2]), str(files[4])}
    with pytest.warns(UserWarning, match="skipped 2 bad files"):
        dm.setup("fit")
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape[2] == dm.frames


def test_duration_none_warns_about_a_clip_far_longer_than_the_median(tmp_path):
    files = ravdess_with_lengths(tmp_path, [0.3, 0.3, 0.3, 0.3, 0.3])
    write_tone(files[5], seconds=1.5)
    with pytest.warns(UserWarning, match="longest usable clip") as record:
        dm = SpectrogramDataModule(
            corpus="ravdess", root=str(tmp_path), **{**FIXTURE, "duration": None}
        )
    message = str(record[0].message)
    assert str(files[5]) in message and "5.0 times the median" in message
    assert "--data.duration" in message
    assert dm.input_shape[1] == 1 + 12000 // 128


def test_duration_none_on_the_synthetic_corpus():
    dm = SpectrogramDataModule(**{**SMALL, "duration": None})
    assert dm.input_shape[1] == 1 + 8000 // 128


# ---------------------------------------------------------------------- nothing usable left
def test_a_corpus_of_lfs_pointers(tmp_path):
    files = make_crema_d_folder(tmp_path, actors=(1001, 1002, 1003))
    for path in files:
        write_bad_file(path, "lfs_pointer")
    with pytest.raises(BadAudioError) as err:
        SpectrogramDataModule(corpus="crema_d", root=str(tmp_path), split="loso", **FIXTURE).setup()
    message = str(err.value)
    # loso fold 0 trains on actor 1003: its six files, the first five named
    assert "is a Git LFS pointer, not audio" in message and "6 files cannot be used" in message
    assert sum(str(p) in message for p in files) == 5 and "and 1 more" in message
    dm = SpectrogramDataModule(
        corpus="crema_d", root=str(tmp_path), split="loso", skip_bad_files=True, **FIXTURE
    )
    with pytest.warns(UserWarning, match="skipped 6 bad files"):
        with pytest.raises(DataError) as err:
            dm.setup("fit")
    message = str(err.value)
    assert "the train split (speakers 1003) has no usable clip left of its 6" in message
    assert "after skipping 6 bad files (listed in the warning above)" in message
    assert not list(default_cache_dir().rglob("stats/*"))


def test_lfs_pointers_with_a_trainer_point_at_the_list_and_cache_no_statistics(tmp_path):
    files = make_crema_d_folder(tmp_path / "crema", actors=(1001, 1002, 1003))
    for path in files:
        write_bad_file(path, "lfs_pointer")
    dm = SpectrogramDataModule(
        corpus="crema_d", root=str(tmp_path / "crema"), split="loso", skip_bad_files=True, **FIXTURE
    )
    trainer = make_trainer(tmp_path)
    with pytest.raises(DataError, match="has no usable clip") as err, pytest.warns(UserWarning):
        trainer.fit(TinyClassifier(dm.input_shape, dm.num_classes), datamodule=dm)
    listed = Path(trainer.log_dir) / "skipped_files.json"
    assert f"listed in {listed})" in str(err.value)
    assert len(json.loads(listed.read_text())) == 6  # the training split's files
    assert not list(default_cache_dir().rglob("stats/*"))


def test_a_split_whose_speakers_only_have_bad_files(tmp_path):
    make_ravdess_folder(tmp_path, actors=range(1, 6), emotions=(1, 2))
    for path in sorted((tmp_path / "Actor_02").iterdir()):  # loso fold 0 validates on Actor_02
        write_bad_file(path, "garbage")
    dm = SpectrogramDataModule(
        corpus="ravdess", root=str(tmp_path), split="loso", skip_bad_files=True, **FIXTURE
    )
    with pytest.warns(UserWarning, match="skipped 2 bad files"):
        with pytest.raises(DataError, match=r"the val split \(speakers Actor_02\) has no usable"):
            dm.setup("fit")
    dm = SpectrogramDataModule(
        corpus="ravdess", root=str(tmp_path), split="loso", fold=2, skip_bad_files=True, **FIXTURE
    )
    with pytest.warns(UserWarning, match="skipped 2 bad files"):
        dm.setup("fit")  # another fold trains on Actor_02's (absent) clips: fine


def test_statistics_are_never_stored_when_not_finite(tmp_path):
    from mts_lightning.data import FeatureCache

    cache = FeatureCache(tmp_path, "x", {"a": 1}, num_bins=3)
    with pytest.raises(ValueError, match="finite"):
        cache.save_stats(["k"], np.array([0.0, np.nan, 1.0]), np.ones(3))
    with pytest.raises(ValueError, match="finite"):
        cache.save_stats(["k"], np.zeros(2), np.ones(2))
    assert not cache.stats_path(["k"]).exists()


def test_stereo_that_cancels_is_reported_by_the_datamodule(tmp_path):
    make_ravdess_folder(tmp_path, actors=range(1, 6), emotions=(1, 2))
    wired = write_stereo(tmp_path / "Actor_01" / "03-01-03-01-01-01-01.wav", right="inverted")
    dm = SpectrogramDataModule(corpus="ravdess", root=str(tmp_path), **FIXTURE)
    with pytest.warns(UserWarning, match="channels cancel") as record:
        dm.setup()
    assert any(str(wired) in str(w.message) for w in record)
    assert len(dm.skipped_files) == 0


# ---------------------------------------------------------------------- damaged cache entries
def damage(path: Path, kind: str) -> None:
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif kind == "random_bytes":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    elif kind == "wrong_shape":
        np.save(path, np.zeros((5, 7), np.float32))
    elif kind == "wrong_dtype":
        np.save(path, np.load(path).astype(np.float64))
    elif kind == "non_finite":
        feature = np.load(path)
        feature[0, 0] = np.nan
        np.save(path, feature)
    elif kind == "pickled":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)


@pytest.mark.parametrize(
    "kind", ["truncated", "random_bytes", "wrong_shape", "wrong_dtype", "non_finite", "pickled"]
)
def test_a_damaged_cache_entry_is_recomputed_with_a_warning(kind, count_features):
    dm = SpectrogramDataModule(**SMALL)
    dm.setup("validate")
    before = next(iter(dm.val_dataloader()))[0]
    computed = len(count_features)
    entry = Path(dm.val_dataset.items[0].feature)
    damage(entry, kind)
    again = SpectrogramDataModule(**SMALL)
    with pytest.warns(UserWarning, match="cached features .* are damaged") as record:
        again.setup("validate")
    clip = again.load_corpus().clips[again.split_indices["val"][0]]
    assert any(clip.path in str(w.message) and str(entry) in str(w.message) for w in record)
    assert len(count_features) == computed + 1
    assert torch.equal(next(iter(again.val_dataloader()))[0], before)


def test_damaged_statistics_are_recomputed():
    dm = SpectrogramDataModule(**SMALL)
    dm.setup("validate")
    dm.val_dataloader()
    (stats,) = default_cache_dir().rglob("stats/*.npz")
    stats.write_bytes(b"PK\x03\x04 not a zip")
    again = SpectrogramDataModule(**SMALL)
    again.setup("validate")
    again.val_dataloader()
    assert torch.equal(again.model_input.mean, dm.model_input.mean)
    assert np.load(stats)["mean"].shape == (32,)


# ---------------------------------------------------------------------- test tempo
def test_test_tempo_changes_the_test_audio_only_and_is_cached_by_it(count_features):
    from mts_lightning.data.cache import CACHE_VERSION, stable_hash

    plain = SpectrogramDataModule(**SMALL)
    plain.setup(None)
    plain.test_dataloader()
    slow = SpectrogramDataModule(**SMALL, test_tempo=0.5)
    slow.setup(None)
    x, _ = next(iter(slow.test_dataloader()))
    assert len(count_features) == 40 + 8  # every clip, then the test clips again at 0.5
    # Tempo 0.5: the 1 s test clips last 2 s; the other parts are the same entries.
    assert {np.load(i.feature).shape[0] for i in slow.test_dataset.items} == {1 + 16000 // 128}
    assert {np.load(i.feature).shape[0] for i in plain.test_dataset.items} == {1 + 8000 // 128}
    for part in ("train", "val"):
        ours, theirs = getattr(slow, f"{part}_dataset"), getattr(plain, f"{part}_dataset")
        assert [i.feature for i in ours.items] == [i.feature for i in theirs.items]
    # Fixed duration: the slowed clip is cropped to its first second.
    assert x.shape[2] == slow.frames == plain.frames
    first = np.load(slow.test_dataset.items[0].feature)[: slow.frames]
    assert torch.allclose(x[0, 0], slow.model_input.normalise(torch.from_numpy(first)))
    # Normalisation statistics: the training split's, whatever the test tempo.
    assert torch.equal(slow.model_input.mean, plain.model_input.mean)
    assert torch.equal(slow.model_input.std, plain.model_input.std)
    # Tempo 1.0 keeps the cache keys of features without tempo; another tempo has its own.
    key = {**plain.feature_config.key(), "cache_version": CACHE_VERSION}
    plain_dir = Path(plain.test_dataset.items[0].feature).parents[2]
    assert plain_dir.name == stable_hash(key)[:16]
    slow_dir = Path(slow.test_dataset.items[0].feature).parents[2]
    assert slow_dir != plain_dir
    assert json.loads((slow_dir / "settings.json").read_text())["tempo"] == 0.5
    again = SpectrogramDataModule(**SMALL, test_tempo=0.5)
    again.setup("test")
    assert torch.equal(next(iter(again.test_dataloader()))[0], x)
    assert len(count_features) == 48  # the second run reads the cache


def test_test_tempo_with_segments_gives_more_segments(tmp_path):
    make_ravdess_folder(tmp_path, actors=range(1, 6), emotions=(1, 2), seconds=1.0)
    settings = dict(corpus="ravdess", root=str(tmp_path), segment_duration=0.4, **FIXTURE)
    counts = {}
    for tempo in (1.0, 0.5, 2.0):
        dm = SpectrogramDataModule(**settings, test_tempo=tempo)
        dm.setup("test")
        _, labels, clip_index = next(iter(dm.test_dataloader()))
        counts[tempo] = torch.bincount(clip_index).tolist()
        assert len(labels) == len(counts[tempo])
    frames = {t: 1 + round(8000 / t) // 128 for t in counts}
    hop = round(dm.frames * 0.5)
    for tempo, per_clip in counts.items():
        assert set(per_clip) == {math.ceil((frames[tempo] - dm.frames) / hop) + 1}
    assert counts[0.5][0] > counts[1.0][0] > counts[2.0][0]


@pytest.mark.parametrize(
    "tempo", [0, -0.5, float("nan"), float("inf"), "fast", True, 1000, 4.01, 0.249, 1e-9]
)
def test_a_bad_test_tempo_is_refused(tempo):
    with pytest.raises(ValueError, match=r"^test_tempo must be a number from 0.25 to 4 \(") as info:
        SpectrogramDataModule(**SMALL, test_tempo=tempo)
    assert str(info.value).endswith(f"got {tempo!r}") and "\n" not in str(info.value)


def test_a_clip_too_short_at_the_test_tempo_is_named(tmp_path):
    """The extreme tempos honoured can still leave a short clip under one analysis frame:
    it is a bad file named with the reason, never an error from inside the features."""
    make_ravdess_folder(tmp_path, actors=range(1, 6), emotions=(1, 2), seconds=0.04)
    settings = dict(corpus="ravdess", root=str(tmp_path), **FIXTURE)
    fast = SpectrogramDataModule(**settings, test_tempo=1.2)  # 320 -> 267 samples: usable
    fast.setup("test")
    assert len(fast.test_dataset) > 0
    with pytest.raises(
        BadAudioError,
        match=r"\.wav: too short: 80 samples after re-timing at tempo 4, fewer than one "
        r"analysis frame \(256 samples",
    ):
        SpectrogramDataModule(**settings, test_tempo=4).setup("test")


def test_synthetic_test_tempo_applies_on_top_of_the_test_stretch():
    settings = {**small(test_stretch=(0.4, 0.5)), "duration": None}
    plain = SpectrogramDataModule(**settings)
    plain.setup("test")
    slow = SpectrogramDataModule(**settings, test_tempo=0.8)
    slow.setup("test")
    plain_frames = np.load(plain.test_dataset.items[0].feature).shape[0]
    slow_frames = np.load(slow.test_dataset.items[0].feature).shape[0]
    assert (plain_frames, slow_frames) == (1 + 8000 // 128, 1 + 10000 // 128)
    # duration=None pads to the longest training clip: the slowed clips are cropped to it.
    assert slow.frames == plain.frames == 1 + 8000 // 128


# ---------------------------------------------------------------------- rate augmentation
def test_augment_tempos_serve_training_clips_at_a_drawn_tempo(count_features):
    plain = SpectrogramDataModule(**SMALL)
    plain.setup("fit")
    tempos = [0.5, 1.0, 2.0]
    dm = SpectrogramDataModule(**SMALL, augment={"tempos": tempos})
    dm.setup("fit")
    # Every training clip once more at 0.5 and at 2.0 (1.0 is the cached original).
    train = len(dm.train_dataset)
    assert len(count_features) == 32 + 2 * train  # train + val, then train twice
    lengths = {1 + round(8000 / t) // 128: t for t in tempos}
    for item in dm.train_dataset.items:
        assert [t for _, t in item.retimed] == tempos
        assert [np.load(f).shape[0] for f, _ in item.retimed] == list(lengths)
    # Validation and the normalisation statistics are the recorded clips'.
    assert [i.feature for i in dm.val_dataset.items] == [i.feature for i in plain.val_dataset.items]
    assert all(not i.retimed for i in dm.val_dataset.items)
    dm.train_dataloader()
    plain.train_dataloader()
    assert torch.equal(dm.model_input.mean, plain.model_input.mean)
    # Each read draws a tempo: over many reads every version is served (seeded).
    torch.manual_seed(0)
    served = []
    item = dm.train_dataset.items[0]
    for _ in range(60):
        x, _ = dm.train_dataset[0]
        # A clip longer than the input is cropped at a random start: any window may come.
        versions = [dm.model_input.normalise(torch.from_numpy(np.load(f))) for f, _ in item.retimed]
        served.append(
            next(
                i
                for i, v in enumerate(versions)
                for start in range(max(1, len(v) - dm.frames + 1))
                if torch.equal(x[0], fix_length(v, dm.frames, start))
            )
        )
    assert set(served) == {0, 1, 2}
    # Without 1.0 in the list the recorded clip is never served.
    only_fast = SpectrogramDataModule(**SMALL, augment={"tempos": [2.0]})
    only_fast.setup("fit")
    assert {t for i in only_fast.train_dataset.items for _, t in i.retimed} == {2.0}


def test_augment_tempos_move_a_segment_to_the_same_moment(tmp_path):
    make_ravdess_folder(tmp_path, actors=range(1, 6), emotions=(1, 2), seconds=1.0)
    settings = dict(corpus="ravdess", root=str(tmp_path), segment_duration=0.4, **FIXTURE)
    dm = SpectrogramDataModule(**settings, augment={"tempos": [0.5]})
    dm.setup("fit")
    dm.train_dataloader()
    last = max(dm.train_dataset.items, key=lambda i: i.start)
    assert last.start > 0
    ((feature, tempo),) = last.retimed
    x, _ = dm.train_dataset[dm.train_dataset.items.index(last)]
    slowed = dm.model_input.normalise(torch.from_numpy(np.load(feature)))
    start = round(last.start / tempo)
    assert torch.equal(x[0], slowed[start : start + dm.frames])


@pytest.mark.parametrize(
    "tempos, message",
    [
        ([], "non-empty list"),
        ("0.7", "tempos must be a list of float or null for augment, got '0.7'"),
        (0.7, "tempos must be a list of float or null for augment, got 0.7"),
        ([0.7, 0.7], "lists a tempo twice"),
        ([1.0, 0], r"augment\.tempos\[1\] must be a number from 0.25 to 4 .*, got 0$"),
        ([float("nan")], r"augment\.tempos\[0\] must be a number from 0.25 to 4"),
        ([True], r"tempos must be a list of float or null for augment, got \[True\]$"),
        ([0.7, 1000], r"augment\.tempos\[1\] must be a number from 0.25 to 4 .*, got 1000$"),
        ([0.2, 1.0], r"augment\.tempos\[0\] must be .*, got 0.2$"),
    ],
)
def test_bad_augment_tempos_are_refused(tempos, message):
    with pytest.raises(ValueError, match=message):
        SpectrogramDataModule(**SMALL, augment={"tempos": tempos})


def test_pad_mode_repeat_fills_short_clips_with_the_clip_itself(tmp_path):
    make_ravdess_folder(tmp_path, actors=range(1, 6), emotions=(1, 2), seconds=0.2)
    settings = dict(corpus="ravdess", root=str(tmp_path), **FIXTURE)
    zeros = SpectrogramDataModule(**settings)
    repeat = SpectrogramDataModule(
        **settings, pad_mode="repeat", augment={"spec_augment": {"time_masks": 0}}
    )
    for dm in (zeros, repeat):
        dm.setup(None)
        dm.train_dataloader()  # the training statistics
    clip = repeat.model_input.normalise(
        torch.from_numpy(np.load(repeat.test_dataset.items[0].feature))
    )
    assert len(clip) < repeat.frames
    x, _ = next(iter(repeat.test_dataloader()))
    assert torch.equal(x[0, 0], clip[torch.arange(repeat.frames) % len(clip)])
    z, _ = next(iter(zeros.test_dataloader()))
    assert z[0, 0, len(clip) :].abs().sum() == 0 and torch.equal(z[0, 0, : len(clip)], clip)
    # Training (augmented) inputs hold no zero-padded frames either.
    assert repeat.train_dataset.model_input.pad_mode == "repeat"
    batch, _ = next(iter(repeat.train_dataloader()))
    assert (batch.abs().sum(dim=3) > 0).all()
    with pytest.raises(ValueError, match="pad_mode must be one of zeros, repeat"):
        SpectrogramDataModule(**settings, pad_mode="edge")


# ---------------------------------------------------------------------- segments -> clips
def test_segmented_clips_are_scored_whole_and_trained_per_segment(tmp_path):
    audio = make_ravdess_folder(tmp_path / "corpus", actors=range(1, 6), emotions=(1, 2))
    long_clip = tmp_path / "predict" / "long.wav"
    write_tone(long_clip, seconds=1.0)
    dm = SpectrogramDataModule(
        corpus="ravdess",
        root=str(tmp_path / "corpus"),
        segment_duration=0.4,
        predict_paths=[str(long_clip), str(audio[0])],
        **{**FIXTURE, "batch_size": 2},
    )
    dm.setup(None)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (2, 1, dm.frames, 24) and y.shape == (2,)  # pairs, one segment each
    assert len(dm.val_dataset) == len(dm.make_split()["val"])  # one item per clip
    x, y, clip_index = next(iter(dm.val_dataloader()))
    assert y.shape == (2,) and x.shape == (len(clip_index), 1, dm.frames, 24)
    dm.setup("predict")
    x, paths, clip_index = next(iter(dm.predict_dataloader()))
    assert paths == [str(long_clip), str(audio[0])]
    per_clip = math.ceil((1 + 8000 // 128 - dm.frames) / round(dm.frames * 0.5)) + 1
    assert torch.bincount(clip_index).tolist() == [per_clip, 1]  # a short clip: one segment


def test_train_speaker_fraction_trains_on_fewer_speakers_only():
    settings = {**small(num_speakers=8), "num_folds": 4}
    full = SpectrogramDataModule(**settings)
    full.setup("fit")
    half = SpectrogramDataModule(**settings, train_speaker_fraction=0.5)
    half.setup("fit")
    assert len(full.split_speakers["train"]) == 4
    assert set(half.split_speakers["train"]) < set(full.split_speakers["train"])
    assert len(half.split_speakers["train"]) == 2
    assert len(half.train_dataset) == 8 * 2
    for part in ("val", "test"):
        assert half.split_speakers[part] == full.split_speakers[part]
    with pytest.raises(ValueError, match=r"train_speaker_fraction must be in \(0, 1\]"):
        SpectrogramDataModule(**SMALL, train_speaker_fraction=0.0)
