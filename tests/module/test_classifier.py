"""EmotionClassifier: metrics, figures, predictions, checkpoints, loss and optimizer set-up."""

from __future__ import annotations

import os
import warnings

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from mts_lightning.callbacks import KernelAveraging
from mts_lightning.module import EmotionClassifier
from mts_lightning.nn import MultiscaleConv2d
from tests.helpers.tiny_runs import make_trainer

CLASSES = ["angry", "happy", "sad"]


pytestmark = pytest.mark.usefixtures("one_thread")


class TinyNet(nn.Module):
    """One MTS layer, pooled to logits."""

    def __init__(self, num_classes: int = 3, kernel_sharing: str = "average") -> None:
        super().__init__()
        self.conv = MultiscaleConv2d(1, 4, 3, padding=1, kernel_sharing=kernel_sharing)
        self.head = nn.Linear(4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.conv(x)).mean(dim=(2, 3)))


class ConstantNet(nn.Module):
    """Always predicts class 0 (a trainable bias, so an optimizer has something to hold)."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([5.0] + [0.0] * (num_classes - 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(x.shape[0], -1)


def make_loader(n: int = 24, batch_size: int = 4, seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 12, 10, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


@pytest.fixture
def fake_zoo(monkeypatch):
    """`build_model` from the zoo, replaced by a TinyNet factory that records its arguments."""
    calls = []

    def build_model(name, **kwargs):
        calls.append((name, kwargs))
        return TinyNet(num_classes=kwargs["num_classes"], **kwargs["mts"])

    monkeypatch.setattr("mts_lightning.models.build_model", build_model)
    return calls


# ---------------------------------------------------------------------- metrics and figures
def test_wa_and_ua_differ_on_imbalanced_data_and_figures_are_saved(tmp_path):
    # 8 x class 0, 1 x class 1, 1 x class 2; the model always says class 0.
    x = torch.zeros(10, 1, 4, 4)
    y = torch.tensor([0, 0, 1, 0, 0, 2, 0, 0, 0, 0])
    loader = DataLoader(TensorDataset(x, y), batch_size=3)  # uneven batches
    model = EmotionClassifier(ConstantNet(), class_names=CLASSES)
    tb = TensorBoardLogger(tmp_path, name="tb")
    trainer = make_trainer(tmp_path, logger=[tb, CSVLogger(tmp_path, name="csv")])

    (val,) = trainer.validate(model, loader, verbose=False)
    (test,) = trainer.test(model, loader, verbose=False)

    for stage, results in (("val", val), ("test", test)):
        assert results[f"{stage}/WA"] == pytest.approx(0.8)
        assert results[f"{stage}/UA"] == pytest.approx(1 / 3)
        assert results[f"{stage}/macro_F1"] == pytest.approx((2 * 0.8 / 1.8) / 3)
        expected_loss = F.cross_entropy(model(x), y).item()
        assert results[f"{stage}/loss"] == pytest.approx(expected_loss, rel=1e-5)
        png = os.path.join(tb.log_dir, "confusion_matrix", f"{stage}_epoch000.png")
        assert os.path.getsize(png) > 1000

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    images = EventAccumulator(tb.log_dir).Reload().Tags()["images"]
    assert {"val/confusion_matrix", "test/confusion_matrix"} <= set(images)


def test_fit_logs_every_metric_per_stage(tmp_path, fake_zoo):
    model = EmotionClassifier(
        "tiny", backbone_kwargs={"mts": {"kernel_sharing": "autograd"}}, num_classes=3
    )
    trainer = make_trainer(tmp_path, limit_train_batches=3, limit_val_batches=2)
    trainer.fit(model, make_loader(), make_loader(seed=1))
    expected = {f"{s}/{m}" for s in ("train", "val") for m in ("loss", "WA", "UA", "macro_F1")}
    assert expected <= set(trainer.callback_metrics)


def test_predict_returns_probabilities_class_names_and_paths(tmp_path):
    class WithPaths(Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return torch.randn(1, 12, 10), f"clip{i}.wav"

    model = EmotionClassifier(TinyNet(), class_names=CLASSES)
    trainer = make_trainer(tmp_path)
    with_paths = trainer.predict(model, DataLoader(WithPaths(), batch_size=3))
    assert [p for out in with_paths for p in out["paths"]] == [f"clip{i}.wav" for i in range(5)]
    tensors_only = trainer.predict(model, DataLoader(torch.randn(4, 1, 12, 10), batch_size=4))
    for out in [*with_paths, *tensors_only]:
        assert out["class_names"] == CLASSES
        assert out["probabilities"].shape[1] == 3
        torch.testing.assert_close(
            out["probabilities"].sum(1), torch.ones(len(out["probabilities"]))
        )
    assert "paths" not in tensors_only[0]


# ---------------------------------------------------------------------- checkpoints
def test_load_from_checkpoint_alone_with_a_named_backbone(tmp_path, fake_zoo):
    model = EmotionClassifier(
        "tiny",
        backbone_kwargs={"mts": {"kernel_sharing": "average"}},
        class_names=CLASSES,
        input_shape=(1, 12, 10),
        class_weights=[1.0, 2.0, 0.5],
        label_smoothing=0.1,
    )
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt")
    trainer = make_trainer(
        tmp_path, [KernelAveraging(), checkpoint], enable_checkpointing=True, limit_train_batches=2
    )
    trainer.fit(model, make_loader())
    assert fake_zoo[0] == (
        "tiny",
        {"mts": {"kernel_sharing": "average"}, "num_classes": 3, "input_shape": (1, 12, 10)},
    )

    loaded = EmotionClassifier.load_from_checkpoint(checkpoint.best_model_path)
    assert loaded.class_names == CLASSES
    assert loaded.label_smoothing == 0.1
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    x = torch.randn(2, 1, 12, 10)
    torch.testing.assert_close(loaded.eval()(x), model.eval()(x))


def test_zoo_backbone_end_to_end(tmp_path):
    from mts_lightning.callbacks import StretchUsageLogger

    model = EmotionClassifier(
        "compact_cnn",
        backbone_kwargs={"channels": [4, 8, 8]},
        class_names=CLASSES,
        input_shape=(1, 32, 16),
    )
    usage = StretchUsageLogger(log_figures=False, save_png=False)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(8, 1, 32, 16, generator=g), torch.tensor([0, 1, 2, 0] * 2))
    trainer = make_trainer(tmp_path, [KernelAveraging(), usage], limit_val_batches=1)
    trainer.fit(model, DataLoader(data, batch_size=4), DataLoader(data, batch_size=4))
    assert usage.history["train"][0]  # the zoo model's MTS layers were found and counted
    trainer.save_checkpoint(tmp_path / "zoo.ckpt")
    loaded = EmotionClassifier.load_from_checkpoint(tmp_path / "zoo.ckpt")
    x = torch.randn(2, 1, 32, 16)
    torch.testing.assert_close(loaded.eval()(x), model.eval()(x))


def test_module_backbone_is_not_stored_and_is_passed_again(tmp_path):
    model = EmotionClassifier(TinyNet(), num_classes=3)
    assert "backbone" not in model.hparams
    assert "optimizer" not in model.hparams  # a Python callable, not configuration
    path = tmp_path / "model.ckpt"
    trainer = make_trainer(tmp_path, [KernelAveraging()], limit_train_batches=1)
    trainer.fit(model, make_loader())
    trainer.save_checkpoint(path)
    loaded = EmotionClassifier.load_from_checkpoint(path, backbone=TinyNet())
    torch.testing.assert_close(loaded.backbone.conv.weight, model.backbone.conv.weight)


def test_lightning_cli_class_path_backbone_reloads_from_checkpoint_alone(tmp_path, monkeypatch):
    from lightning.pytorch.cli import LightningCLI

    monkeypatch.setattr("sys.argv", ["mts-lightning"])
    cli = LightningCLI(
        EmotionClassifier,
        run=False,
        args={
            "model": {
                "backbone": {
                    "class_path": f"{TinyNet.__module__}.TinyNet",
                    "init_args": {"num_classes": 3},
                },
                "num_classes": 3,
                "optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.01}},
            },
            "trainer": {
                "accelerator": "cpu",
                "max_epochs": 1,
                "limit_train_batches": 1,
                "logger": False,
                "enable_progress_bar": False,
                "enable_checkpointing": False,
                "default_root_dir": str(tmp_path),
            },
        },
        save_config_callback=None,
        seed_everything_default=0,
    )
    cli.trainer.callbacks.append(KernelAveraging())
    cli.trainer.fit(cli.model, make_loader())
    cli.trainer.save_checkpoint(tmp_path / "cli.ckpt")
    loaded = EmotionClassifier.load_from_checkpoint(tmp_path / "cli.ckpt")
    assert isinstance(loaded.backbone, TinyNet)
    assert isinstance(loaded.configure_optimizers(), torch.optim.SGD)
    torch.testing.assert_close(loaded.backbone.conv.weight, cli.model.backbone.conv.weight)


# ---------------------------------------------------------------------- KernelAveraging warning
@pytest.mark.parametrize(
    ("kernel_sharing", "with_callback", "warns"),
    [("average", False, True), ("average", True, False), ("autograd", False, False)],
)
def test_warns_once_when_average_layers_lack_kernel_averaging(
    tmp_path, kernel_sharing, with_callback, warns
):
    model = EmotionClassifier(TinyNet(kernel_sharing=kernel_sharing), num_classes=3)
    callbacks = [KernelAveraging()] if with_callback else []
    trainer = make_trainer(tmp_path, callbacks, max_epochs=2, limit_train_batches=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, make_loader())
    ours = [w for w in caught if "KernelAveraging" in str(w.message)]
    assert len(ours) == (1 if warns else 0)


# ---------------------------------------------------------------------- loss and optimizers
def test_class_weights_and_label_smoothing_reach_the_loss(tmp_path):
    logits, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 2, 1, 0])
    model = EmotionClassifier(
        TinyNet(), num_classes=3, class_weights=[1, 3, 0.5], label_smoothing=0.2
    )
    expected = F.cross_entropy(
        logits, labels, weight=torch.tensor([1, 3, 0.5]), label_smoothing=0.2
    )
    torch.testing.assert_close(model.loss(logits, labels), expected)
    plain = EmotionClassifier(TinyNet(), num_classes=3)
    torch.testing.assert_close(plain.loss(logits, labels), F.cross_entropy(logits, labels))


def test_auto_class_weights_come_from_the_datamodule(tmp_path):
    class WeightedData(pl.LightningDataModule):
        class_weights = torch.tensor([0.5, 1.0, 2.0])

        def train_dataloader(self):
            return make_loader()

    model = EmotionClassifier(TinyNet(), num_classes=3, class_weights="auto")
    trainer = make_trainer(tmp_path, [KernelAveraging()], limit_train_batches=1)
    trainer.fit(model, datamodule=WeightedData())
    torch.testing.assert_close(model.class_weight, torch.tensor([0.5, 1.0, 2.0]))

    without = EmotionClassifier(TinyNet(), num_classes=3, class_weights="auto")
    with pytest.raises(ValueError, match="datamodule"):
        make_trainer(tmp_path, [KernelAveraging()], limit_train_batches=1).fit(
            without, make_loader()
        )


def test_optimizer_and_scheduler_callables():
    default = EmotionClassifier(TinyNet(), num_classes=3)
    optimizer = default.configure_optimizers()
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.defaults["lr"] == 1e-3

    model = EmotionClassifier(
        TinyNet(),
        num_classes=3,
        optimizer=lambda params: torch.optim.SGD(params, lr=0.1),
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(opt),
    )
    config = model.configure_optimizers()
    assert isinstance(config["optimizer"], torch.optim.SGD)
    assert config["lr_scheduler"]["monitor"] == "val/loss"
    assert config["lr_scheduler"]["interval"] == "epoch"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 4, "class_names": CLASSES}, "class_names"),
        ({}, "num_classes"),
        ({"num_classes": 3, "label_smoothing": 1.0}, "label_smoothing"),
        ({"num_classes": 3, "class_weights": [1.0, 2.0]}, "class_weights"),
        ({"num_classes": 3, "class_weights": "balanced"}, "class_weights"),
        ({"num_classes": 3, "lr_scheduler_interval": "batch"}, "lr_scheduler_interval"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EmotionClassifier(TinyNet(), **kwargs)


# ---------------------------------------------------------------------- UA and macro-F1
EMOTIONS = ["angry", "happy", "sad", "neutral"]
# (targets, predictions, UA, macro-F1), computed by hand over the classes present in targets.
PRESENT_CLASS_CASES = {
    # The reported case: angry x3, happy x3, one angry clip predicted sad (never a target).
    # UA (2/3 + 1) / 2; F1 angry 2*2/(2+3) = 0.8, happy 1.
    "missing_classes": ([0, 0, 0, 1, 1, 1], [0, 0, 2, 1, 1, 1], 5 / 6, 0.9),
    # Every class present: recalls 1/2, 1, 1, 1/2; F1 2/4, 4/5, 1, 2/3.
    "all_present": (
        [0, 1, 2, 3, 0, 1, 2, 3],
        [0, 1, 2, 3, 1, 1, 2, 0],
        0.75,
        (0.5 + 0.8 + 1.0 + 2 / 3) / 4,
    ),
    # Classes 2 and 3 only predicted: they count in neither mean (F1 2/3 for 0 and 1).
    "only_predicted": ([0, 0, 1, 1], [2, 0, 1, 3], 0.5, 2 / 3),
    # One class: its recall 3/4 and F1 2*3/(3+4).
    "one_class": ([1, 1, 1, 1], [1, 1, 0, 1], 0.75, 6 / 7),
}


@pytest.mark.parametrize("case", sorted(PRESENT_CLASS_CASES))
def test_ua_and_macro_f1_count_the_classes_present(case):
    from mts_lightning.metrics import PresentClassF1, PresentClassRecall

    targets, preds, ua, f1 = PRESENT_CLASS_CASES[case]
    targets, preds = torch.tensor(targets), torch.tensor(preds)
    for metric, expected in ((PresentClassRecall(4), ua), (PresentClassF1(4), f1)):
        half = len(targets) // 2  # two batches sum to the same counts
        metric.update(preds[:half], targets[:half])
        metric.update(F.one_hot(preds[half:], 4).float(), targets[half:])  # scores work too
        assert metric.compute().item() == pytest.approx(expected, abs=1e-6)


def test_present_class_metrics_without_data_and_with_bad_labels():
    from mts_lightning.metrics import PresentClassRecall

    assert torch.isnan(PresentClassRecall(3).compute())
    with pytest.raises(ValueError, match=r"target must be class indices in \[0, 2\]"):
        PresentClassRecall(3).update(torch.tensor([0]), torch.tensor([3]))
    with pytest.raises(ValueError, match="num_classes"):
        PresentClassRecall(1)


class IndexNet(nn.Module):
    """Predicts the class written in each input's first element (logits 5 there, 0 elsewhere),
    through a trainable scale so an optimizer has something to hold."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.scale = nn.Parameter(torch.tensor(5.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * F.one_hot(x[:, 0, 0, 0].long(), self.num_classes).float()


@pytest.mark.parametrize("case", sorted(PRESENT_CLASS_CASES))
def test_every_stage_logs_ua_over_the_classes_present(tmp_path, monkeypatch, case):
    targets, preds, ua, f1 = PRESENT_CLASS_CASES[case]
    x = torch.zeros(len(preds), 1, 2, 2)
    x[:, 0, 0, 0] = torch.tensor(preds, dtype=torch.float)
    loader = DataLoader(TensorDataset(x, torch.tensor(targets)), batch_size=3)
    figures = []

    def record(matrix, class_names, title):
        figures.append((matrix, list(class_names)))
        return confusion_matrix_figure(matrix, class_names, title)

    from mts_lightning.plotting import confusion_matrix_figure

    monkeypatch.setattr("mts_lightning.module.confusion_matrix_figure", record)
    model = EmotionClassifier(
        IndexNet(4), class_names=EMOTIONS, optimizer=lambda p: torch.optim.SGD(p, lr=0.0)
    )
    trainer = make_trainer(tmp_path)
    trainer.fit(model, loader, loader)
    logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
    (test,) = trainer.test(model, loader, verbose=False)
    for stage, results in (("train", logged), ("val", logged), ("test", test)):
        assert results[f"{stage}/UA"] == pytest.approx(ua, abs=1e-6)
        assert results[f"{stage}/macro_F1"] == pytest.approx(f1, abs=1e-6)
    # The confusion matrix still shows every class, absent ones as empty rows.
    matrix, names = figures[-1]
    assert names == EMOTIONS and matrix.shape == (4, 4)
    assert matrix.sum(axis=1).tolist() == [targets.count(c) for c in range(4)]


# ---------------------------------------------------------------------- plateau schedulers
def _frequency(**kwargs):
    from mts_lightning.scheduling import plateau_frequency

    settings = dict(
        monitor="val/loss",
        interval="epoch",
        validates=True,
        check_val_every_n_epoch=1,
        val_check_batch=10,
        num_training_batches=10,
        accumulate_grad_batches=1,
    )
    return plateau_frequency(**{**settings, **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "frequency"),
    [
        ({}, 1),
        ({"check_val_every_n_epoch": 3}, 3),
        ({"check_val_every_n_epoch": 3, "val_check_batch": 4}, 3),  # within every 3rd epoch
        ({"val_check_batch": float("inf"), "num_training_batches": float("inf")}, 1),
        ({"interval": "step", "val_check_batch": 5}, 5),
        ({"interval": "step", "check_val_every_n_epoch": None, "val_check_batch": 5}, 5),
        ({"interval": "step", "val_check_batch": 6, "accumulate_grad_batches": 3}, 6),
        # Validation after batch 10 only, the last one, where the optimizer always steps.
        ({"interval": "step", "accumulate_grad_batches": 3}, 10),
    ],
)
def test_plateau_frequency_follows_validation(kwargs, frequency):
    assert _frequency(**kwargs) == frequency


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"validates": False}, "never validates"),
        ({"val_check_batch": None}, "on a clock"),
        ({"check_val_every_n_epoch": None}, "check_val_every_n_epoch is null"),
        ({"interval": "step", "check_val_every_n_epoch": 2}, "only once every 2 epochs"),
        ({"interval": "step", "val_check_batch": float("inf")}, "has no length"),
        (
            {"interval": "step", "check_val_every_n_epoch": None, "val_check_batch": 4},
            "divides 10",
        ),
        ({"interval": "step", "val_check_batch": 5, "accumulate_grad_batches": 2}, "multiple of 2"),
    ],
)
def test_plateau_frequency_refuses_what_cannot_follow_validation(kwargs, match):
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    with pytest.raises(MisconfigurationException, match=match):
        _frequency(**kwargs)


# ---------------------------------------------------------------------- segments -> clips
class FirstBinsNet(nn.Module):
    """Hand-built: a segment's logits are the time-mean of its first ``num_classes`` bins."""

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.unused = nn.Parameter(torch.zeros(()))  # an optimizer needs a parameter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0, :, : self.num_classes].mean(dim=1) + 0 * self.unused


def write_segmented_clips(folder) -> list[tuple[str, int]]:
    """Two clips of three 4-frame segments each (no overlap): two segments strongly for the
    clip's class, one weakly for the other; so per segment 4 of 6 are right, per clip 2 of 2."""
    import numpy as np

    features = []
    for label in (0, 1):
        right, wrong = np.zeros(2, np.float32), np.zeros(2, np.float32)
        right[label], wrong[1 - label] = 2.0, 1.0
        frames = np.concatenate([np.tile(v, (4, 1)) for v in (right, wrong, right)])
        path = folder / f"clip{label}.npy"
        np.save(path, np.pad(frames, ((0, 0), (0, 2))))  # 4 bins: 2 read by the net, 2 not
        features.append((str(path), label))
    return features


def segment_loaders(tmp_path):
    from mts_lightning.data.dataset import (
        SegmentedClipDataset,
        SpectrogramDataset,
        collate_segments,
        make_items,
    )
    from mts_lightning.data.frontend import ModelInput

    features = write_segmented_clips(tmp_path)
    model_input = ModelInput(4, segment_overlap=0.0, mean=torch.zeros(4), std=torch.ones(4))
    per_segment = SpectrogramDataset(make_items(features, 4, 0.0), model_input)
    per_clip = SegmentedClipDataset(make_items(features, 4), model_input)
    segments = DataLoader(per_segment, batch_size=6)
    clips = DataLoader(per_clip, batch_size=2, collate_fn=collate_segments)
    return segments, clips, per_clip


def test_segment_logits_are_averaged_per_clip(tmp_path, monkeypatch):
    segments, clips, _ = segment_loaders(tmp_path)
    x, y, clip_index = next(iter(clips))
    assert x.shape == (6, 1, 4, 4) and y.tolist() == [0, 1]
    assert clip_index.tolist() == [0, 0, 0, 1, 1, 1]

    model = EmotionClassifier(backbone=FirstBinsNet(), num_classes=2)
    per_segment = make_trainer(tmp_path).test(model, dataloaders=segments, verbose=False)[0]
    assert per_segment["test/WA"] == pytest.approx(4 / 6)

    matrices = []
    monkeypatch.setattr(
        "mts_lightning.module.confusion_matrix_figure",
        lambda matrix, *args, **kwargs: matrices.append(matrix) or plt_figure(),
    )
    per_clip = make_trainer(tmp_path).test(model, dataloaders=clips, verbose=False)[0]
    assert per_clip["test/WA"] == 1.0 and per_clip["test/UA"] == 1.0
    # Loss of the averaged logits: (4/3, 1/3) for class 0 and its mirror image.
    expected = F.cross_entropy(torch.tensor([[4 / 3, 1 / 3], [1 / 3, 4 / 3]]), torch.tensor([0, 1]))
    assert per_clip["test/loss"] == pytest.approx(float(expected), abs=1e-5)
    assert matrices[-1].tolist() == [[1, 0], [0, 1]]  # counts clips, not segments

    metrics = make_trainer(tmp_path).validate(model, dataloaders=clips, verbose=False)[0]
    assert metrics["val/WA"] == 1.0


def plt_figure():
    import matplotlib.pyplot as plt

    return plt.figure()


def test_predict_gives_one_row_per_segmented_clip(tmp_path):
    from mts_lightning.data.dataset import Item, SegmentedClipDataset, collate_segments

    segments, clips, per_clip = segment_loaders(tmp_path)
    named = SegmentedClipDataset(
        [Item(item.feature, f"clip{i}.wav") for i, item in enumerate(per_clip.items)],
        per_clip.model_input,
    )
    loader = DataLoader(named, batch_size=2, collate_fn=collate_segments)
    model = EmotionClassifier(backbone=FirstBinsNet(), num_classes=2)
    (out,) = make_trainer(tmp_path).predict(model, dataloaders=loader)
    assert out["paths"] == ["clip0.wav", "clip1.wav"]
    assert out["probabilities"].shape == (2, 2)
    assert out["probabilities"].argmax(dim=1).tolist() == [0, 1]
    # A labelled triple gives the same rows, without paths.
    (labelled,) = make_trainer(tmp_path).predict(model, dataloaders=clips)
    assert torch.allclose(labelled["probabilities"], out["probabilities"])
    assert "paths" not in labelled


def test_average_per_clip_checks_the_index():
    from mts_lightning.module import average_per_clip

    logits = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 5.0]])
    assert average_per_clip(logits, torch.tensor([0, 0, 1]), 2).tolist() == [
        [2.0, 1.0],
        [0.0, 5.0],
    ]
    with pytest.raises(ValueError, match="one clip per segment"):
        average_per_clip(logits, torch.tensor([0, 1]), 2)
