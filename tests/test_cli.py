"""The ``mts-lightning`` CLI end to end: fit, validate, test and predict on the synthetic set and
on a RAVDESS-named fixture folder; config errors; the shipped configs."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from data_fixtures import (
    make_crema_d_folder,
    make_emodb_folder,
    make_iemocap_folder,
    make_ravdess_folder,
    make_savee_folder,
    make_tess_folder,
)

from mts_lightning.cli import MTSLightningCLI, cli_main
from mts_lightning.data.corpora import CORPUS_CLASSES

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

# The synthetic corpus, tiny: 4 speakers x 6 clips of 1 s (one speaker per val/test fold).
TINY_SYNTHETIC = [
    "--data.synthetic_speakers=4",
    "--data.synthetic_clips_per_speaker=6",
    "--data.synthetic_duration=1.0",
    "--data.duration=1.0",
    "--data.num_folds=4",
    "--data.batch_size=4",
]
TINY_TRAINER = [
    "--trainer.max_epochs=1",
    "--trainer.max_time=null",
    "--trainer.limit_train_batches=2",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
]


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch, one_thread):
    """No pytest arguments seen by the CLI (and one thread for the tiny models)."""
    monkeypatch.setattr(sys, "argv", ["mts-lightning"])


def run_dirs(save_dir: Path, name: str) -> list[Path]:
    return sorted((save_dir / name).glob("version_*"), key=lambda p: int(p.name.split("_")[1]))


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def fit_validate_test_predict(
    config: Path, extra: list[str], save_dir: Path, name: str, predict_paths: list[str], capsys
) -> tuple[Path, Path, list[dict[str, str]]]:
    """Run the four subcommands through the CLI; return the fit run folder, the best checkpoint
    and the predictions."""
    logger = [f"--trainer.logger.init_args.save_dir={save_dir}"]
    fit = cli_main(["fit", f"--config={config}", *extra, *TINY_TRAINER, *logger])
    out = capsys.readouterr().out
    run = run_dirs(save_dir, name)[0]
    best = Path(fit.trainer.checkpoint_callback.best_model_path)
    assert best.is_file() and best.parent == run / "checkpoints"
    # The summary names the validation WA/UA and where things are.
    assert "validation (best epoch 0): WA" in out and "UA" in out
    assert str(best) in out and f"run folder (logs): {run}" in out
    assert (run / "metrics.csv").is_file() and (run / "split_speakers.json").is_file()
    assert (run / "confusion_matrix" / "val_epoch000.png").is_file()

    # The resolved config is saved, names the run, and replays the run's settings.
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["trainer"]["logger"]["init_args"]["name"] == name
    assert saved["model"]["backbone"] == fit.model.hparams.backbone
    rerun = [f"--config={run / 'config.yaml'}", f"--ckpt_path={best}", *logger]

    validate = cli_main(["validate", *rerun, "--trainer.enable_progress_bar=false"])
    val_metrics = validate.trainer.callback_metrics
    assert {"val/WA", "val/UA", "val/macro_F1", "val/loss"} <= set(val_metrics)
    # The best checkpoint's score comes back on validation.
    score = fit.trainer.checkpoint_callback.best_model_score
    assert float(val_metrics["val/UA"]) == pytest.approx(float(score), abs=1e-6)

    test = cli_main(["test", *rerun, "--trainer.enable_progress_bar=false"])
    assert {"test/WA", "test/UA", "test/macro_F1"} <= set(test.trainer.callback_metrics)

    output = save_dir / "predictions.csv"
    cli_main(
        [
            "predict",
            *rerun,
            f"--data.predict_paths={predict_paths}",
            f"--prediction_writer.output_path={output}",
        ]
    )
    rows = read_csv(output)
    assert f"Wrote {len(rows)} predictions to {output}" in capsys.readouterr().out
    return run, best, rows


def check_predictions(rows: list[dict[str, str]], files: list[str], class_names: list[str]) -> None:
    assert [r["file"] for r in rows] == files
    assert list(rows[0]) == ["file", "predicted_emotion", *(f"prob_{c}" for c in class_names)]
    for row in rows:
        probs = [float(row[f"prob_{c}"]) for c in class_names]
        assert sum(probs) == pytest.approx(1.0, abs=1e-4)
        assert (
            row["predicted_emotion"] == class_names[max(range(len(probs)), key=probs.__getitem__)]
        )


# ---------------------------------------------------------------------- end to end
def test_synthetic_fit_validate_test_predict(tmp_path, capsys, monkeypatch):
    audio = make_ravdess_folder(tmp_path / "audio", actors=[1], emotions=[1, 2, 3], seconds=1.0)
    predict = [str(tmp_path / "audio"), str(audio[0])]  # a folder and a file (listed again)
    run, best, rows = fit_validate_test_predict(
        CONFIGS / "synthetic.yaml",
        TINY_SYNTHETIC,
        tmp_path / "logs",
        "synthetic",
        predict,
        capsys,
    )
    assert (run / "stretch_usage.png").is_file()  # StretchUsageLogger came from the config
    check_predictions(
        rows, [str(p) for p in audio] + [str(audio[0])], [f"pattern_{c}" for c in range(6)]
    )

    # Predicting needs neither the training data nor its cache: the normalisation statistics
    # and the feature settings come from the checkpoint (here against a config that differs).
    monkeypatch.setenv("MTS_LIGHTNING_CACHE", str(tmp_path / "fresh-cache"))
    output = tmp_path / "again.csv"
    cli = cli_main(
        [
            "predict",
            f"--ckpt_path={best}",
            f"--data.predict_paths=[{audio[0]}]",
            f"--prediction_writer.output_path={output}",
            f"--trainer.default_root_dir={tmp_path / 'predict-root'}",
            "--trainer.logger=false",
            "--data.n_mels=32",
        ]
    )
    assert cli.datamodule.input_shape == (1, 32, 64)  # duration and n_mels of the checkpoint
    assert not (tmp_path / "fresh-cache" / "synthetic").exists()
    assert read_csv(output)[0]["prob_pattern_0"] == rows[0]["prob_pattern_0"]


def test_ravdess_folder_fit_validate_test_predict(tmp_path, capsys):
    root = tmp_path / "RAVDESS"
    files = make_ravdess_folder(root, actors=range(1, 7), emotions=range(1, 9), seconds=0.5)
    extra = [
        f"--data.root={root}",
        "--data.duration=0.5",
        "--data.num_workers=0",
        "--data.batch_size=8",
        "--model.lr_scheduler=null",
    ]
    predict = [str(root / "Actor_01")]
    run, best, rows = fit_validate_test_predict(
        CONFIGS / "ravdess" / "modern.yaml",
        extra,
        tmp_path / "logs",
        "ravdess_modern",
        predict,
        capsys,
    )
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["corpus"] == "ravdess" and saved["model"]["class_weights"] == "auto"
    names = CORPUS_CLASSES["ravdess"]
    assert names[:4] == ["neutral", "calm", "happy", "sad"]
    actor1 = sorted(str(f) for f in files if f.parent.name == "Actor_01")
    check_predictions(rows, actor1, names)


def test_predict_without_the_corpus(tmp_path, capsys):
    """A model trained on a corpus folder predicts other files once that folder is gone."""
    root = tmp_path / "RAVDESS"
    make_ravdess_folder(root, actors=range(1, 6), emotions=range(1, 5), seconds=0.5)
    clip = make_ravdess_folder(tmp_path / "new", actors=[9], emotions=[2], seconds=0.5)[0]
    config = CONFIGS / "ravdess" / "paper_conv.yaml"
    fit = cli_main(
        [
            "fit",
            f"--config={config}",
            f"--data.root={root}",
            "--data.duration=1.0",  # 32 frames: enough for the 10x5 kernels,
            "--data.num_workers=0",
            f"--trainer.logger.init_args.save_dir={tmp_path / 'logs'}",
            *TINY_TRAINER,
        ]
    )
    best = fit.trainer.checkpoint_callback.best_model_path
    run = run_dirs(tmp_path / "logs", "ravdess_paper_conv")[0]
    for path in sorted(root.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    root.rmdir()
    cli_main(
        [
            "predict",
            f"--config={run / 'config.yaml'}",
            f"--ckpt_path={best}",
            f"--data.predict_paths=[{clip}]",
        ]
    )
    out = capsys.readouterr().out
    written = Path(out.split("predictions to ")[-1].strip())
    assert written.name == "predictions.csv" and written.parent.parent == run.parent
    assert [r["file"] for r in read_csv(written)] == [str(clip)]


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data.bogus=1"], "unrecognized arguments: --data.bogus"),
        (["--trainer.max_epochs=many"], 'Parser key "trainer.max_epochs"'),
        (["--data.corpus=ravdess"], "RAVDESS needs `root`"),
        (["--data.corpus=emodb", "--data.root=/nonexistent/EmoDB"], "/nonexistent/EmoDB"),
        (["--model.backbone=no_such_net"], "unknown model name 'no_such_net'"),
        (["--data.num_folds=20"], "split"),
    ],
)
def test_config_errors_exit_with_a_message(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", f"--config={CONFIGS / 'synthetic.yaml'}", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and message in err
    assert "Traceback" not in err


def test_predict_errors(tmp_path, capsys):
    base = ["predict", f"--config={CONFIGS / 'synthetic.yaml'}"]
    cases = [
        ([f"--data.predict_paths=[{tmp_path}]"], "predict needs --ckpt_path"),
        ([f"--ckpt_path={tmp_path / 'missing.ckpt'}"], "missing.ckpt' is not a file"),
    ]
    for args, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            cli_main([*base, *args])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_module_entry_point_reports_a_missing_root_without_traceback(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MTS_LIGHTNING_CACHE": str(tmp_path)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mts_lightning",
            "fit",
            f"--config={CONFIGS / 'ravdess' / 'modern.yaml'}",
            f"--data.root={tmp_path / 'nowhere'}",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "mts-lightning fit: error: FileNotFoundError: RAVDESS root" in result.stderr


# ---------------------------------------------------------------------- configs
def test_print_config(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", f"--config={CONFIGS / 'synthetic.yaml'}", "--print_config"])
    assert exit_info.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["backbone"] == "compact_cnn"
    assert config["data"]["corpus"] == "synthetic"
    callbacks = [c["class_path"] for c in config["trainer"]["callbacks"]]
    assert "mts_lightning.KernelAveraging" in callbacks
    assert "mts_lightning.StretchUsageLogger" in callbacks


FIXTURES = {
    "ravdess": lambda root: make_ravdess_folder(root, actors=range(1, 11), emotions=range(1, 9)),
    "crema_d": lambda root: make_crema_d_folder(root, actors=range(1001, 1011)),
    "emodb": lambda root: make_emodb_folder(root, speakers=[f"{i:02d}" for i in range(3, 13)]),
    "tess": lambda root: make_tess_folder(root, words=("back", "bar", "base", "bath")),
    "savee": make_savee_folder,
    "iemocap": make_iemocap_folder,
}


@pytest.mark.parametrize("corpus", sorted(FIXTURES))
@pytest.mark.parametrize("variant", ["paper_conv", "paper_mts", "modern"])
def test_corpus_configs_build(tmp_path, corpus, variant):
    """Every corpus config parses, builds its datamodule and model on a fixture folder, and its
    split can be made."""
    FIXTURES[corpus](tmp_path / corpus)
    config = CONFIGS / corpus / f"{variant}.yaml"
    cli = MTSLightningCLI(
        args=[
            f"--config={config}",
            f"--data.root={tmp_path / corpus}",
            "--data.duration=2.0",  # fixture clips are 0.3 s: pad to 64 frames, not the longest
            "--data.segment_duration=null",
            f"--trainer.logger.init_args.save_dir={tmp_path / 'logs'}",
        ],
        run=False,
    )
    datamodule, model = cli.datamodule, cli.model
    assert datamodule.corpus == corpus
    assert (
        model.num_classes == datamodule.num_classes and model.class_names == datamodule.class_names
    )
    datamodule.make_split()
    assert all(datamodule.split_indices[part] for part in ("train", "val", "test"))
    with torch.no_grad():
        assert model(torch.zeros(2, *datamodule.input_shape)).shape == (2, model.num_classes)
    conv_type = "conv" if variant == "paper_conv" else "mts"
    assert cli.config.model.backbone_kwargs["conv_type"] == conv_type


@pytest.mark.parametrize("logger", ["csv", "tensorboard", "wandb"])
def test_logger_configs_compose(tmp_path, logger):
    cli = MTSLightningCLI(
        args=[
            f"--config={CONFIGS / 'synthetic_conv.yaml'}",
            f"--config={CONFIGS / 'loggers' / f'{logger}.yaml'}",
        ],
        run=False,
    )
    loggers = cli.trainer.loggers
    expected = {
        "csv": ["CSVLogger"],
        "tensorboard": ["TensorBoardLogger"],
        "wandb": ["CSVLogger", "WandbLogger"],
    }[logger]
    assert [type(lg).__name__ for lg in loggers] == expected
    assert loggers[0].name == "synthetic_conv"  # named after the experiment, not the logger file


# ---------------------------------------------------------------------- resuming a killed run
def _read_rows(path: Path) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if v} for row in read_csv(path)]


def _rows_so_far(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file another process may be writing."""
    try:
        return read_csv(path)
    except (OSError, csv.Error):
        return []


def test_killed_fit_resumes_to_the_uninterrupted_result(tmp_path):
    """A CLI fit killed with SIGKILL in the middle of an epoch, resumed with the README's
    command, ends where the uninterrupted run ends: weights, optimizer, metrics, callbacks."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    settings = [
        f"--config={CONFIGS / 'synthetic.yaml'}",
        *TINY_SYNTHETIC,
        "--data.synthetic_clips_per_speaker=12",  # 6 training batches per epoch
        "--trainer.max_epochs=2",
        "--trainer.max_time=null",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
    ]

    def fit(save_dir: Path, *extra: str) -> subprocess.Popen:
        args = [sys.executable, "-m", "mts_lightning", "fit", *extra]
        logger = f"--trainer.logger.init_args.save_dir={save_dir}"
        # Each run fills its own feature cache, as a first run does.
        cache = {"MTS_LIGHTNING_CACHE": str(save_dir / "cache")}
        return subprocess.Popen(
            [*args, logger],
            cwd=tmp_path,
            env={**env, **cache},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    full = fit(tmp_path / "full", *settings)  # the uninterrupted run, alongside
    killed = fit(tmp_path / "killed", *settings)
    run = tmp_path / "killed" / "synthetic" / "version_0"
    last, metrics = run / "checkpoints" / "last.ckpt", run / "metrics.csv"
    deadline = time.monotonic() + 120
    # Kill once epoch 0 is checkpointed and logged: the process is then in epoch 1.
    while killed.poll() is None and time.monotonic() < deadline:
        if last.is_file() and any(row.get("train/loss") for row in _rows_so_far(metrics)):
            killed.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    assert killed.wait(timeout=60) == -signal.SIGKILL, killed.stderr.read().decode()[-2000:]
    assert torch.load(last, weights_only=True)["epoch"] == 0

    # The README's command.
    resumed = fit(tmp_path / "killed", f"--config={run / 'config.yaml'}", f"--ckpt_path={last}")
    for process in (resumed, full):
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err.decode()[-2000:]
    assert not (tmp_path / "killed" / "synthetic" / "version_1").exists()  # the same folder

    reference = tmp_path / "full" / "synthetic" / "version_0"
    a = torch.load(reference / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"]) == (1, 12)
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    for key in ("optimizer_states", "lr_schedulers", "random_state", "callbacks"):
        # Checkpoint callbacks hold paths: the same files, in each run's folder.
        assert str(a[key]).replace(str(reference), "RUN") == str(b[key]).replace(str(run), "RUN")
    assert _read_rows(metrics) == _read_rows(reference / "metrics.csv")
