"""EMAWeights: the average written out, where it is used (validation, checkpoints, after fit,
test from a checkpoint), resuming, batch norm, and its place after KernelAveraging."""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mts_lightning.callbacks import EMAWeights, KernelAveraging
from mts_lightning.callbacks.weight_averaging import (
    TRAINED_STATE_KEY,
    averaged_names,
    ema_decay,
)
from mts_lightning.nn import MultiscaleConv2d
from tests.helpers.tiny_runs import make_trainer, synthetic_corpus

pytestmark = pytest.mark.usefixtures("one_thread")


class Net(pl.LightningModule):
    """A linear layer, batch norm and an MTS layer (its kernel sharing as given)."""

    def __init__(self, kernel_sharing: str = "autograd") -> None:
        super().__init__()
        self.conv = MultiscaleConv2d(1, 3, 3, padding=1, kernel_sharing=kernel_sharing)
        self.norm = nn.BatchNorm2d(3)
        self.head = nn.Linear(3, 3)
        self.validated: list[dict[str, torch.Tensor]] = []

    def forward(self, x):
        return self.head(F.relu(self.norm(self.conv(x))).mean(dim=(2, 3)))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):
        if batch_idx == 0:
            self.validated.append({k: v.clone() for k, v in self.state_dict().items()})
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.2, momentum=0.5)


class StepRecorder(Callback):
    """The weights after every optimizer step, as the callbacks before it left them."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, *args):
        self.states.append({k: v.clone() for k, v in pl_module.state_dict().items()})


def loader(n: int = 24, batch_size: int = 4) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 8, 6, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def trainer(tmp_path, callbacks, epochs: int = 2, **kwargs) -> pl.Trainer:
    """The tests' quiet CPU trainer, checkpointing on unless a test turns it off."""
    return make_trainer(
        tmp_path, callbacks, max_epochs=epochs, **{"enable_checkpointing": True, **kwargs}
    )


def written_out(initial, states, names, decay):
    """The average of the recorded weights, as the docstring defines it."""
    average = {k: initial[k].clone() for k in names}
    for n, state in enumerate(states):
        d = min(decay, (1 + n) / (10 + n))
        for k in names:
            average[k] = d * average[k] + (1 - d) * state[k]
    return average


def test_average_written_out_used_for_validation_checkpoint_and_after_fit(tmp_path):
    torch.manual_seed(0)
    model = Net()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    recorder, ema = StepRecorder(), EMAWeights(half_life_epochs=0.5)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="last")
    fit = trainer(tmp_path, [recorder, ema, checkpoint])
    fit.fit(model, loader(), loader(8))
    names = averaged_names(model)
    assert ema.decay == pytest.approx(0.5 ** (1 / (0.5 * 6)))  # 6 steps per epoch
    assert ema.num_updates == len(recorder.states) == 12
    average = written_out(initial, recorder.states, names, ema.decay)
    # validation after epoch 1 saw the average of its 6 steps; after fit the model holds it
    epoch_one = written_out(initial, recorder.states[:6], names, ema.decay)
    for k in names:
        torch.testing.assert_close(model.validated[0][k], epoch_one[k])
        torch.testing.assert_close(model.state_dict()[k], average[k])
    # counters stay the trained model's: batch norm saw 12 batches
    assert int(model.norm.num_batches_tracked) == 12
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    for k in names:
        torch.testing.assert_close(saved["state_dict"][k], average[k])
        torch.testing.assert_close(saved[TRAINED_STATE_KEY][k], recorder.states[-1][k])
    assert "norm.running_var" in names and "norm.num_batches_tracked" not in names


def test_training_goes_on_from_the_trained_weights_not_the_average(tmp_path):
    runs = []
    for callbacks in ([], [EMAWeights(half_life_epochs=0.5)]):
        torch.manual_seed(0)
        recorder = StepRecorder()
        fit = trainer(tmp_path, [recorder, *callbacks])
        fit.fit(Net(), loader(), loader(8))
        runs.append(recorder.states[-1])
    for k in runs[0]:
        torch.testing.assert_close(runs[0][k], runs[1][k])


def test_test_and_load_from_checkpoint_use_the_average(tmp_path):
    torch.manual_seed(0)
    model = Net()
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="last")
    trainer(tmp_path, [EMAWeights(), checkpoint]).fit(model, loader(), loader(8))
    path = tmp_path / "ckpt" / "last.ckpt"
    saved = torch.load(path, weights_only=True)["state_dict"]
    reloaded = Net.load_from_checkpoint(path)
    for k, v in saved.items():
        assert torch.equal(reloaded.state_dict()[k], v), k
    tester = trainer(tmp_path, [EMAWeights()], enable_checkpointing=False)
    fresh = Net()
    tester.test(fresh, loader(8), ckpt_path=str(path))
    for k, v in saved.items():
        assert torch.equal(fresh.state_dict()[k], v), k


def test_resumed_fit_gives_the_uninterrupted_average(tmp_path):
    torch.manual_seed(0)
    whole = Net()
    trainer(tmp_path / "a", [EMAWeights(half_life_epochs=0.5)], epochs=2).fit(
        whole, loader(), loader(8)
    )
    torch.manual_seed(0)
    first = Net()
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "b", filename="last")
    trainer(tmp_path / "b", [EMAWeights(half_life_epochs=0.5), checkpoint], epochs=1).fit(
        first, loader(), loader(8)
    )
    resumed, ema = Net(), EMAWeights(half_life_epochs=0.5)
    trainer(tmp_path / "c", [ema], epochs=2).fit(
        resumed, loader(), loader(8), ckpt_path=str(tmp_path / "b" / "last.ckpt")
    )
    assert ema.num_updates == 12
    for k, v in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v)


def test_mts_kernels_are_averaged_after_kernel_averaging(tmp_path):
    torch.manual_seed(0)
    model = Net(kernel_sharing="average")
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    recorder, ema = StepRecorder(), EMAWeights(half_life_epochs=0.5)
    averaging = KernelAveraging()
    trainer(tmp_path, [averaging, recorder, ema], epochs=1).fit(model, loader(), loader(8))
    assert averaging.num_averagings == 6
    average = written_out(initial, recorder.states, averaged_names(model), ema.decay)
    torch.testing.assert_close(model.conv.weight, average["conv.weight"])
    # the recorder, after KernelAveraging, saw every step's base with the branch updates in
    assert not torch.equal(recorder.states[0]["conv.weight"], initial["conv.weight"])


def test_ema_before_kernel_averaging_is_refused(tmp_path):
    fit = trainer(tmp_path, [EMAWeights(), KernelAveraging()], epochs=1)
    with pytest.raises(MisconfigurationException, match="must come after KernelAveraging"):
        fit.fit(Net(kernel_sharing="average"), loader(), loader(8))


@pytest.mark.parametrize("bad", [0, -1.0, math.inf, True, "1"])
def test_half_life_is_checked(bad):
    with pytest.raises(ValueError, match="half_life_epochs must be a positive number"):
        EMAWeights(half_life_epochs=bad)


def test_decay_warms_up():
    assert ema_decay(0.99, 0) == pytest.approx(0.1)
    assert ema_decay(0.99, 90) == pytest.approx(0.91)
    assert ema_decay(0.9, 1000) == 0.9


def test_misordered_callbacks_in_a_config_exit_with_one_line(tmp_path, capsys, monkeypatch):
    from mts_lightning.cli import cli_main

    monkeypatch.setattr("sys.argv", ["mts-lightning"])
    monkeypatch.chdir(tmp_path)
    config = Path(__file__).resolve().parents[2] / "configs" / "synthetic.yaml"
    callbacks = (
        "[{class_path: mts_lightning.callbacks.EMAWeights}, "
        "{class_path: mts_lightning.KernelAveraging}]"
    )
    with pytest.raises(SystemExit) as exit_info:
        cli_main(
            [
                "fit",
                f"--config={config}",
                f"--trainer.callbacks={callbacks}",
                *synthetic_corpus(speakers=5, seconds=None),
                "--trainer.max_epochs=1",
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if "error:" in line]
    assert "EMAWeights must come after KernelAveraging" in line and "Traceback" not in err
