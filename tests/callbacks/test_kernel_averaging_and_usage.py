"""KernelAveraging and StretchUsageLogger on a plain LightningModule (nothing else from the package)."""

from __future__ import annotations

import csv
import glob
import os

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mts_lightning.callbacks import KernelAveraging, StretchUsageLogger
from mts_lightning.callbacks.stretch_usage import format_scale
from mts_lightning.nn import MultiscaleConv1d, MultiscaleConv2d
from tests.helpers.tiny_runs import make_trainer
from tests.helpers.wandb_records import read_wandb_history

pytestmark = pytest.mark.usefixtures("one_thread")


class TinyMTSNet(nn.Module):
    """Two MTS layers (one with a frequency factor), pooled to logits."""

    def __init__(self, num_classes: int = 3, kernel_sharing: str = "average") -> None:
        super().__init__()
        self.conv1 = MultiscaleConv2d(1, 3, 3, padding=1, kernel_sharing=kernel_sharing)
        self.conv2 = MultiscaleConv2d(
            3,
            4,
            3,
            padding=1,
            kernel_sharing=kernel_sharing,
            scale_factors=((0.7, 1.0), (1.5, 1.4)),
        )
        self.head = nn.Linear(4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return self.head(x.mean(dim=(2, 3)))


class PlainModule(pl.LightningModule):
    """A user's own LightningModule: no EmotionClassifier involved."""

    def __init__(self, kernel_sharing: str = "average", lr: float = 0.05) -> None:
        super().__init__()
        self.net = TinyMTSNet(kernel_sharing=kernel_sharing)
        self.lr = lr

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def make_loader(n: int = 40, batch_size: int = 4, seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 12, 10, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)


class ResumableLoader(DataLoader):
    """A DataLoader Lightning can resume mid-epoch: it skips the batches already consumed."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.consumed, self._skip = 0, 0

    def __iter__(self):
        skip, self._skip = self._skip, 0
        self.consumed = skip
        for i, batch in enumerate(super().__iter__()):
            if i >= skip:
                self.consumed += 1
                yield batch

    def state_dict(self) -> dict:
        return {"consumed": self.consumed % len(self)}  # a finished epoch: start afresh

    def load_state_dict(self, state: dict) -> None:
        self._skip = state["consumed"]


def mts_layers(module: nn.Module) -> dict[str, nn.Module]:
    return {
        n: m
        for n, m in module.named_modules()
        if isinstance(m, (MultiscaleConv2d, MultiscaleConv1d))
    }


class WeightProbe(Callback):
    """Snapshots MTS kernels at batch end; placed before (and after) KernelAveraging."""

    def __init__(self) -> None:
        self.snapshots: list[tuple[int, int, dict]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        state = {
            name: (
                layer.weight.detach().clone(),
                [w.detach().clone() for w in layer.branch_weights],
            )
            for name, layer in mts_layers(pl_module).items()
        }
        self.snapshots.append((batch_idx, trainer.global_step, state))


# ---------------------------------------------------------------------- KernelAveraging
def test_averaging_once_per_optimizer_step_with_accumulation(tmp_path):
    pl.seed_everything(0)
    before, after = WeightProbe(), WeightProbe()
    averaging = KernelAveraging()
    trainer = make_trainer(
        tmp_path, [before, averaging, after], accumulate_grad_batches=3, limit_val_batches=0
    )
    trainer.fit(PlainModule(), make_loader(n=40))  # 10 batches: steps after batches 2, 5, 8, 9

    assert trainer.global_step == 4
    assert averaging.num_optimizer_steps == 4
    assert averaging.num_averagings == 4
    changed = []
    for (idx, _, pre), (_, _, post) in zip(before.snapshots, after.snapshots, strict=True):
        for name, (weight, branches) in pre.items():
            if torch.equal(weight, post[name][0]):
                continue
            changed.append(idx)
            # The manual average: base and every branch kernel resized back, bilinear by size.
            expected = weight.clone()
            for branch in branches:
                expected += F.interpolate(
                    branch, size=weight.shape[-2:], mode="bilinear", align_corners=False
                )
            expected /= 1 + len(branches)
            torch.testing.assert_close(post[name][0], expected, rtol=0, atol=1e-6)
    assert sorted(set(changed)) == [2, 5, 8, 9]
    assert changed.count(2) == 2  # both layers averaged at each step


@pytest.mark.parametrize(("every_n_steps", "expected"), [(2, 5), (3, 3)])
def test_every_n_steps(tmp_path, every_n_steps, expected):
    averaging = KernelAveraging(every_n_steps=every_n_steps)
    trainer = make_trainer(tmp_path, [averaging], limit_val_batches=0)
    trainer.fit(PlainModule(), make_loader(n=40))
    assert averaging.num_optimizer_steps == 10
    assert averaging.num_averagings == expected


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_every_n_steps_validated(bad):
    with pytest.raises(ValueError, match="every_n_steps"):
        KernelAveraging(every_n_steps=bad)


def test_autograd_layers_are_left_alone_without_warnings(tmp_path, recwarn):
    def run(callbacks):
        pl.seed_everything(0)
        model = PlainModule(kernel_sharing="autograd")
        make_trainer(tmp_path, callbacks, limit_val_batches=0).fit(model, make_loader(n=16))
        return model

    averaging = KernelAveraging()
    with_cb = run([averaging])
    assert averaging.num_averagings == 0
    assert not [w for w in recwarn if "KernelAveraging" in str(w.message)]
    assert not [w for w in recwarn if "kernel" in str(w.message).lower()]
    without_cb = run([])
    for a, b in zip(with_cb.state_dict().values(), without_cb.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_skipped_amp_steps_are_not_averaged(tmp_path):
    """A GradScaler step skipped on inf gradients counts in global_step but is not averaged."""
    from lightning.pytorch.plugins import MixedPrecision

    class InfOnSecondStep(PlainModule):
        def on_after_backward(self):  # before the scaler unscales and checks the gradients
            if self.trainer.global_step == 1:
                self.net.head.weight.grad.fill_(float("inf"))

    pl.seed_everything(0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    averaging = KernelAveraging()
    before, after = WeightProbe(), WeightProbe()
    trainer = make_trainer(
        tmp_path,
        [before, averaging, after],
        plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)],
        limit_val_batches=0,
        limit_train_batches=4,
    )
    trainer.fit(InfOnSecondStep(), make_loader(n=16))
    assert trainer.global_step == 4
    assert averaging.num_optimizer_steps == 3
    assert averaging.num_averagings == 3
    pre, post = before.snapshots[1][2], after.snapshots[1][2]
    assert all(torch.equal(pre[n][0], post[n][0]) for n in pre)


# ---------------------------------------------------------------------- StretchUsageLogger
class UsageRecorder(Callback):
    """Independent count: sums each layer's last-forward usage after every batch."""

    def __init__(self) -> None:
        self.totals: dict[tuple[str, int], dict[str, torch.Tensor]] = {}

    def _add(self, stage, trainer, pl_module):
        if trainer.sanity_checking:
            return
        key = (stage, trainer.current_epoch)
        totals = self.totals.setdefault(key, {})
        for name, layer in mts_layers(pl_module).items():
            totals[name] = totals.get(name, 0) + layer.last_stretch_usage_counts.clone()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._add("train", trainer, pl_module)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *args):
        self._add("val", trainer, pl_module)


@pytest.mark.slow
def test_usage_reaches_csv_and_offline_wandb(tmp_path):
    pl.seed_everything(0)
    usage, recorder = StretchUsageLogger(), UsageRecorder()
    csv_logger = CSVLogger(tmp_path / "csv", name="run")
    wandb_logger = WandbLogger(save_dir=str(tmp_path), project="mts-test", offline=True)
    trainer = make_trainer(
        tmp_path,
        [KernelAveraging(), usage, recorder],
        max_epochs=2,
        logger=[csv_logger, wandb_logger],
        limit_train_batches=4,
        limit_val_batches=2,
        val_check_interval=2,  # validation inside the training epoch: counts must stay apart
    )
    trainer.fit(PlainModule(), make_loader(n=16), make_loader(n=8, seed=1))
    wandb_logger.experiment.finish()

    # History equals the independent per-batch count, train and val kept apart.
    assert usage.epochs == {"train": [0, 1], "val": [0, 0, 1, 1]}
    for (stage, epoch), totals in recorder.totals.items():
        for name, counts in totals.items():
            entries = [
                c[name]
                for e, c in zip(usage.epochs[stage], usage.history_counts[stage], strict=True)
                if e == epoch
            ]
            assert sum(entries).tolist() == counts.tolist()
    assert set(usage.history["train"][0]) == {"net.conv1", "net.conv2"}
    assert usage.branch_labels["net.conv2"] == ["x1", "x0.7", "x1.5_f1.4"]

    keys = {
        f"stretch_usage/{stage}/{name}/{label}": [float(entry[name][j]) for entry in entries]
        for stage, entries in usage.history.items()
        for name, labels in usage.branch_labels.items()
        for j, label in enumerate(labels)
    }
    with open(os.path.join(csv_logger.log_dir, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    for key, values in keys.items():
        logged = [float(r[key]) for r in rows if r.get(key)]
        assert logged == pytest.approx(values), key

    (run_file,) = glob.glob(str(tmp_path / "wandb" / "offline-run-*" / "run-*.wandb"))
    wandb_rows = read_wandb_history(run_file)
    for key, values in keys.items():
        logged = [r[key] for r in wandb_rows if key in r]
        assert logged == pytest.approx(values), key
    assert any(
        "stretch_usage/train/bars" in r or "stretch_usage/train/bars/_type" in r for r in wandb_rows
    )
    assert glob.glob(str(tmp_path / "wandb" / "offline-run-*" / "files" / "media" / "table" / "*"))
    assert os.path.isfile(os.path.join(csv_logger.log_dir, "stretch_usage.png"))


def test_usage_figures_reach_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(tmp_path, name="tb")
    trainer = make_trainer(
        tmp_path,
        [KernelAveraging(), StretchUsageLogger()],
        logger=logger,
        limit_train_batches=2,
        limit_val_batches=1,
    )
    trainer.fit(PlainModule(), make_loader(n=8), make_loader(n=4))
    events = EventAccumulator(logger.log_dir).Reload()
    assert {"stretch_usage/train/bars", "stretch_usage/val/bars"} <= set(events.Tags()["images"])
    assert "stretch_usage/train/net.conv1/x0.7" in events.Tags()["scalars"]
    assert os.path.isfile(os.path.join(logger.log_dir, "stretch_usage.png"))


class SaveBeforeUsageLogger(Callback):
    """A user's callback that checkpoints at train epoch end, before StretchUsageLogger runs."""

    def __init__(self, folder) -> None:
        self.folder = folder

    def on_train_epoch_end(self, trainer, pl_module):
        step = trainer.global_step
        trainer.save_checkpoint(self.folder / f"epoch={trainer.current_epoch}-step={step}.ckpt")


@pytest.mark.parametrize(
    ("checkpoint_kwargs", "resume_from", "pending"),
    [
        ({}, "epoch=0-step=2.ckpt", False),  # saved at train epoch end, after the callbacks
        # saved when validation ends, before the train epoch's end hook: its counts are pending
        ({"save_on_train_epoch_end": False}, "epoch=0-step=2.ckpt", True),
        ({"every_n_train_steps": 3}, "epoch=1-step=3.ckpt", True),  # mid-epoch
        (None, "epoch=0-step=2.ckpt", True),  # saved at epoch end, before the usage logger's hook
    ],
    ids=["train_epoch_end", "validation_end", "mid_epoch", "epoch_end_before_logger"],
)
def test_resume_reproduces_uninterrupted_run(tmp_path, checkpoint_kwargs, resume_from, pending):
    def run(root, ckpt_path=None):
        pl.seed_everything(0)
        model = PlainModule()
        averaging, usage = KernelAveraging(), StretchUsageLogger(log_figures=False, save_png=False)
        if checkpoint_kwargs is None:
            callbacks = [SaveBeforeUsageLogger(tmp_path / "ckpt"), averaging, usage]
        else:
            callbacks = [
                averaging,
                usage,
                ModelCheckpoint(
                    tmp_path / "ckpt", "{epoch}-{step}", save_top_k=-1, **checkpoint_kwargs
                ),
            ]
        trainer = make_trainer(
            root,
            callbacks,
            max_epochs=3,
            enable_checkpointing=checkpoint_kwargs is not None,
            accumulate_grad_batches=3,
            limit_train_batches=5,
            limit_val_batches=2,
        )
        train = make_loader(n=20)
        train = ResumableLoader(train.dataset, batch_size=train.batch_size)
        trainer.fit(model, train, make_loader(n=8, seed=1), ckpt_path=ckpt_path)
        return model, averaging, usage

    full, full_avg, full_usage = run(tmp_path / "full")
    ckpt_path = tmp_path / "ckpt" / resume_from
    saved = torch.load(ckpt_path, weights_only=True)["callbacks"]["StretchUsageLogger"]
    assert (saved["pending_train"] is not None) == pending
    resumed, res_avg, res_usage = run(tmp_path / "resumed", ckpt_path=ckpt_path)

    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert full_avg.state_dict() == res_avg.state_dict()
    assert full_avg.num_averagings == 6  # 5 batches, accumulation 3: 2 steps per epoch
    assert full_usage.state_dict() == res_usage.state_dict()
    assert full_usage.epochs == {"train": [0, 1, 2], "val": [0, 1, 2]}


def test_stretch_usage_arguments_and_labels():
    with pytest.raises(ValueError, match="stages"):
        StretchUsageLogger(stages=("train", "predict"))
    with pytest.raises(ValueError, match="stages"):
        StretchUsageLogger(stages=())
    assert StretchUsageLogger(stages="val").stages == ("val",)
    assert format_scale((1.0, 1.0)) == "x1"
    assert format_scale((0.7, 1.0)) == "x0.7"
    assert format_scale((1.428, 1.0)) == "x1.428"
    assert format_scale((0.7, 1.2)) == "x0.7_f1.2"


def test_fit_summary_lists_a_run_folder_without_confusion_matrices(tmp_path):
    from mts_lightning.callbacks.fit_summary import run_files

    (tmp_path / "checkpoints").mkdir()
    for name in ("config.yaml", "metrics.csv", "checkpoints/last.ckpt"):
        (tmp_path / name).write_text("x")
    assert run_files(tmp_path, best_epoch=3) == [
        str(tmp_path / "checkpoints" / "last.ckpt"),
        str(tmp_path / "config.yaml"),
        str(tmp_path / "metrics.csv"),
    ]
