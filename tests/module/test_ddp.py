"""Two-process DDP on CPU (ddp_spawn, gloo): same MTS weights on both ranks, usage and metrics summed."""

from __future__ import annotations

import csv
import glob
import os

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mts_lightning.callbacks import KernelAveraging, StretchUsageLogger
from mts_lightning.module import EmotionClassifier
from mts_lightning.nn import MultiscaleConv2d

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = MultiscaleConv2d(1, 3, 3, padding=1)
        self.head = nn.Linear(3, 3)

    def forward(self, x):
        return self.head(F.relu(self.conv(x)).mean(dim=(2, 3)))


class RankDump(Callback):
    """Each rank writes its weights, the usage of its own batches and its val predictions."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.local = {"train": 0, "val": 0}
        self.val_hits: list[torch.Tensor] = []
        self.val_preds: list[torch.Tensor] = []
        self.val_targets: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        conv = pl_module.backbone.conv
        self.local["train"] = self.local["train"] + conv.last_stretch_usage_counts.clone()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *args):
        conv = pl_module.backbone.conv
        self.local["val"] = self.local["val"] + conv.last_stretch_usage_counts.clone()
        preds = pl_module(batch[0]).argmax(-1)
        self.val_hits.append(preds == batch[1])
        self.val_preds.append(preds)
        self.val_targets.append(batch[1])

    def on_fit_end(self, trainer, pl_module):
        usage = next(cb for cb in trainer.callbacks if isinstance(cb, StretchUsageLogger))
        torch.save(
            {
                "state": {k: v.detach().clone() for k, v in pl_module.state_dict().items()},
                "counters_shared": pl_module.backbone.conv.stretch_usage_counts.is_shared(),
                "local": self.local,
                "val_hits": torch.cat(self.val_hits),
                "val_preds": torch.cat(self.val_preds),
                "val_targets": torch.cat(self.val_targets),
                "history_counts": usage.history_counts,
            },
            os.path.join(self.folder, f"rank{trainer.global_rank}.pt"),
        )


def test_ddp_spawn_same_weights_and_summed_usage(tmp_path):
    pl.seed_everything(0)
    g = torch.Generator().manual_seed(0)
    # Rank 0 gets the even items (classes 0 and 1), rank 1 the odd ones (class 1 only); class 2
    # is never a target. A mean of per-rank UAs, or one over every class, would differ.
    x, y = torch.randn(16, 1, 8, 6, generator=g), (torch.arange(16) % 4 != 0).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_epochs=1,
        logger=CSVLogger(tmp_path, name="ddp"),
        callbacks=[
            KernelAveraging(),
            StretchUsageLogger(log_figures=False),
            RankDump(str(tmp_path)),
        ],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    model = EmotionClassifier(TinyNet(), num_classes=3, optimizer=torch.optim.Adam)
    trainer.fit(model, loader, loader)

    # The ranks ran in spawned processes: read what they wrote, wherever rank zero's logger went.
    (log_dir,) = {os.path.dirname(p) for p in glob.glob(str(tmp_path / "ddp" / "*" / "*"))}
    with open(os.path.join(log_dir, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]

    for key, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][key]), key
    assert not any(r["counters_shared"] for r in ranks), (
        "the MTS layer's usage counters are in memory shared by the spawned processes "
        "(Lightning unshares only parameters and buffers), so every rank counts into one tensor"
    )
    for stage in ("train", "val"):
        local = [r["local"][stage] for r in ranks]
        assert not torch.equal(local[0], local[1])  # the ranks saw different data
        total = (local[0] + local[1]).numpy()
        for r in ranks:  # every rank holds the summed history
            assert r["history_counts"][stage][0]["backbone.conv"].tolist() == total.tolist()
        keys = [f"stretch_usage/{stage}/backbone.conv/{s}" for s in ("x1", "x0.7", "x1.428")]
        logged = [float(next(row[k] for row in rows if row.get(k))) for k in keys]
        assert logged == [float(v) for v in total / total.sum()]
    hits = torch.cat([r["val_hits"] for r in ranks])
    assert len(hits) == 16
    val_wa = float(next(row["val/WA"] for row in rows if row.get("val/WA")))
    assert val_wa == float(hits.float().mean())
    # UA: recall averaged over the classes present in both ranks' targets together.
    preds = torch.cat([r["val_preds"] for r in ranks])
    targets = torch.cat([r["val_targets"] for r in ranks])
    recalls = [float((preds[targets == c] == c).float().mean()) for c in targets.unique()]
    val_ua = float(next(row["val/UA"] for row in rows if row.get("val/UA")))
    assert len(recalls) == 2 and val_ua == pytest.approx(sum(recalls) / 2, abs=1e-6)
    assert os.path.isfile(os.path.join(log_dir, "stretch_usage.png"))
    assert os.path.isfile(os.path.join(log_dir, "confusion_matrix", "val_epoch000.png"))
