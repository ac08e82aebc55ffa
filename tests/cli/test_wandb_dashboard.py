"""What a W&B run of the CLI shows, read back from an offline run's files: per-epoch metrics,
confusion matrices, stretch usage per MTS layer and the resolved config."""

from __future__ import annotations

import glob
import sys
from pathlib import Path

import pytest
import yaml

from mts_lightning.cli import cli_main
from tests.helpers.tiny_runs import TINY_SYNTHETIC, TINY_TRAINER
from tests.helpers.wandb_records import read_wandb_config, read_wandb_history

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch, one_thread):
    """No pytest arguments seen by the CLI (and one thread for the tiny models)."""
    monkeypatch.setattr(sys, "argv", ["mts-lightning"])


@pytest.mark.slow
@pytest.mark.e2e
def test_wandb_run_shows_metrics_confusion_matrix_stretch_usage_and_config(tmp_path):
    # The shipped logger config, with its folders moved under tmp_path.
    loggers = yaml.safe_load((CONFIGS / "loggers" / "wandb.yaml").read_text())
    for logger in loggers["trainer"]["logger"]:
        logger["init_args"]["save_dir"] = str(tmp_path / "logs")
    logger_config = tmp_path / "wandb.yaml"
    logger_config.write_text(yaml.safe_dump(loggers))

    cli = cli_main(
        [
            "fit",
            f"--config={CONFIGS / 'synthetic.yaml'}",
            f"--config={logger_config}",
            *TINY_SYNTHETIC,
            *TINY_TRAINER,
            "--trainer.max_epochs=2",
        ]
    )
    (run,) = glob.glob(str(tmp_path / "logs" / "wandb" / "offline-run-*"))
    run = Path(run)

    # The run's name and project come from the config; the CSV logger's folder is the run folder.
    wandb_logger = cli.trainer.loggers[1]
    assert wandb_logger.name == "mts-lightning"
    csv_dir = Path(cli.trainer.loggers[0].log_dir)
    assert csv_dir.parent.name == "synthetic" and (csv_dir / "config.yaml").is_file()

    # Metrics per epoch, with the epoch.
    (run_file,) = run.glob("run-*.wandb")
    rows = read_wandb_history(str(run_file))
    for stage in ("train", "val"):
        epochs = [r["epoch"] for r in rows if f"{stage}/UA" in r]
        assert epochs == [0, 1], stage
        assert all(
            {f"{stage}/WA", f"{stage}/loss", f"{stage}/macro_F1"} <= set(r)
            for r in rows
            if f"{stage}/UA" in r
        )

    # The confusion matrix (an image per validation epoch).
    def has(row, key):
        return key in row or f"{key}/_type" in row or any(k.startswith(f"{key}/") for k in row)

    assert sum(has(r, "val/confusion_matrix") for r in rows) == 2
    assert list((run / "files" / "media" / "images").glob("val/confusion_matrix*.png"))

    # Stretch usage per MTS layer and branch, as charts (scalars), bar figures and tables.
    layers = [n for n, m in cli.model.named_modules() if type(m).__name__ == "MultiscaleConv2d"]
    assert len(layers) == 3
    for stage in ("train", "val"):
        for layer in layers:
            for label in ("x1", "x0.7", "x1.428"):
                key = f"stretch_usage/{stage}/{layer}/{label}"
                values = [r[key] for r in rows if key in r]
                assert len(values) == 2 and all(0.0 <= v <= 1.0 for v in values), key
        assert any(has(r, f"stretch_usage/{stage}/bars") for r in rows)
        assert any(has(r, f"stretch_usage/{stage}/table") for r in rows)

    # The resolved config: the whole CLI config, not only the model's hyperparameters.
    config = read_wandb_config(str(run_file))
    assert config["data"]["corpus"] == "synthetic"
    assert config["data"]["corpus_options"]["num_speakers"] == 4
    assert config["model"]["backbone_kwargs"]["conv_type"] == "mts"
    assert config["trainer"]["max_epochs"] == 2
    callbacks = [c["class_path"] for c in config["trainer"]["callbacks"]]
    assert "mts_lightning.StretchUsageLogger" in callbacks
    assert config["seed_everything"] == 0
    assert config["num_classes"] == 6  # the model's hyperparameters, logged by Lightning
