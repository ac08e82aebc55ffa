"""The ``mts-lightning`` CLI end to end: fit, validate, test and predict on the synthetic set and
on a RAVDESS-named fixture folder; config errors; the shipped configs."""

from __future__ import annotations

import csv
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import EarlyStopping

from mts_lightning.cli import MTSLightningCLI, cli_main
from mts_lightning.data import SpectrogramDataModule
from mts_lightning.data.corpora import CORPUS_CLASSES
from tests.helpers import doc_pages
from tests.helpers.data_fixtures import (
    make_crema_d_folder,
    make_emodb_folder,
    make_iemocap_folder,
    make_ravdess_folder,
    make_savee_folder,
    make_tess_folder,
)
from tests.helpers.tiny_runs import TINY_SYNTHETIC, TINY_TRAINER, synthetic_corpus

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"

# The synthetic corpus, tiny: 4 speakers x 6 clips of 1 s (one speaker per val/test fold).


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
    # The checkpoint's score comes back on validation: the best one's, or, for a checkpoint
    # kept without a monitor (the modern recipes keep the last epoch), the last validation's.
    score = fit.trainer.checkpoint_callback.best_model_score
    if score is None:
        score = fit.trainer.callback_metrics["val/UA"]
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
@pytest.mark.slow
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
    other = tmp_path / "other.yaml"  # settings from a config file are not explicit ones
    other.write_text(yaml.safe_dump({"data": {"features": {"n_mels": 32}}}))
    cli = cli_main(
        [
            "predict",
            f"--config={other}",
            f"--ckpt_path={best}",
            f"--data.predict_paths=[{audio[0]}]",
            f"--prediction_writer.output_path={output}",
            f"--trainer.default_root_dir={tmp_path / 'predict-root'}",
            "--trainer.logger=false",
        ]
    )
    assert cli.datamodule.input_shape == (1, 32, 64)  # duration and n_mels of the checkpoint
    assert not (tmp_path / "fresh-cache" / "synthetic").exists()
    assert read_csv(output)[0]["prob_pattern_0"] == rows[0]["prob_pattern_0"]


@pytest.mark.slow
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


@pytest.mark.slow
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
@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data.bogus=1"], "unrecognized arguments: --data.bogus"),
        (["--trainer.max_epochs=many"], 'Parser key "trainer.max_epochs"'),
        (["--data.corpus=ravdess"], "RAVDESS needs `root`"),
        (["--data.corpus=emodb", "--data.root=/nonexistent/EmoDB"], "/nonexistent/EmoDB"),
        (["--model.backbone=no_such_net"], "unknown model name 'no_such_net'"),
        (["--data.num_folds=20"], "split"),
        # Tempos the re-timing cannot honour, refused before any work.
        (["--data.test_tempo", "1000"], "test_tempo must be a number from 0.25 to 4"),
        (["--data.test_tempo=0.01"], "test_tempo must be a number from 0.25 to 4"),
        (["--data.augment.tempos=[1.0, 8]"], "augment.tempos[1] must be a number from 0.25"),
        # The corpus's options, checked against its declaration.
        (
            ["--data.corpus_options.num_speaker=4"],
            "corpus_options of 'synthetic' takes no argument 'num_speaker' (did you mean "
            "'num_speakers'?); it takes seed, num_classes,",
        ),
        (
            ["--data.corpus=emodb", "--data.root=/x", "--data.corpus_options.include_song=true"],
            "corpus_options: corpus 'emodb' takes no options, got include_song",
        ),
        (
            ["--data.features.options.n_mfcc=13"],
            "features.options of 'logmel' takes no argument 'n_mfcc'",
        ),
    ],
)
def test_config_errors_exit_with_a_message(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", f"--config={CONFIGS / 'synthetic.yaml'}", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and message in err
    assert "Traceback" not in err


COMPACT_CNN_ARGUMENTS = (
    "num_classes, input_shape, conv_type, channels, kernel_size, dropout, mts, mts_stages, "
    "width_multiplier, kernel_span, pooling"
)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("subcommand", "args", "message"),
    [
        # The reported input (issue 18, G), then siblings: unknown, ill-typed, nested, data.
        (
            "fit",
            ["--model.backbone_kwargs", "{conv_typ: conv}"],
            "ValueError: backbone_kwargs: compact_cnn takes no argument 'conv_typ' (did you mean "
            f"'conv_type'?); it takes {COMPACT_CNN_ARGUMENTS}",
        ),
        (
            "fit",
            ["--model.backbone_kwargs={dropout: high}"],
            "ValueError: backbone_kwargs: dropout must be float for compact_cnn, got 'high'",
        ),
        (
            "fit",
            ["--model.backbone_kwargs={channels: 5}"],
            "ValueError: backbone_kwargs: channels must be a list of int for compact_cnn, got 5",
        ),
        (
            "fit",
            ["--model.backbone_kwargs={kernel_size: [5]}"],
            "ValueError: backbone_kwargs: kernel_size must be [int, int] for compact_cnn, got [5]",
        ),
        (
            "fit",
            ["--model.backbone_kwargs={conv_type: mts, mts: {kernel_sharng: autograd}}"],
            "ValueError: backbone_kwargs: mts: unknown option(s) kernel_sharng; MultiscaleConv2d "
            "takes scale_factors, output_type",
        ),
        (
            "fit",
            ["--model.backbone_kwargs={mts: {track_stretch_usage: sometimes}}"],
            "ValueError: backbone_kwargs: mts: track_stretch_usage must be bool for "
            "MultiscaleConv2d, got 'sometimes'",
        ),
        (
            "fit",
            ["--model.backbone_kwargs={num_classes: 3}"],
            "ValueError: backbone_kwargs: num_classes is the classifier's own argument",
        ),
        (
            "fit",
            ["--model.backbone=paper_2conv", "--model.backbone_kwargs={channels: [4, 8]}"],
            "ValueError: backbone_kwargs: channels must be int for paper_2conv, got [4, 8]",
        ),
        (
            "fit",
            ["--model.backbone=compact_cn"],
            "ValueError: unknown model name 'compact_cn'; known models: alexnet,",
        ),
        ("fit", ["--data.batch_sze=4"], "unrecognized arguments: --data.batch_sze=4"),
        ("fit", ["--data.features.n_mels=many"], 'Parser key "data.features.n_mels": Expected'),
        (
            "validate",
            ["--model.backbone_kwargs={conv_typ: conv}"],
            "ValueError: backbone_kwargs: compact_cnn takes no argument 'conv_typ'",
        ),
        (
            "test",
            ["--model.backbone_kwargs={mts: {fuse_branch: never}}"],
            "ValueError: backbone_kwargs: mts: unknown option(s) fuse_branch;",
        ),
        ("test", ["--data.corpus_option.test_stretch=[0.3, 0.4]"], "unrecognized arguments"),
    ],
)
def test_model_and_data_option_errors_are_one_line(subcommand, args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main([subcommand, f"--config={CONFIGS / 'synthetic.yaml'}", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "usage:" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"mts-lightning {subcommand}: error: {message}"), last


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


def test_unreadable_file_found_inside_fit_exits_with_one_line(tmp_path, capsys):
    """A damaged file is only found when ``trainer.fit`` sets the data up (reading it): the
    user still gets one line naming it, not a traceback."""
    root = tmp_path / "RAVDESS"
    files = make_ravdess_folder(root, actors=range(1, 6), emotions=range(1, 5), seconds=0.5)
    files[3].write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:0\n")
    with pytest.raises(SystemExit) as exit_info:
        cli_main(
            [
                "fit",
                f"--config={CONFIGS / 'ravdess' / 'modern.yaml'}",
                f"--data.root={root}",
                "--data.duration=0.5",
                "--data.num_workers=0",
                f"--trainer.logger.init_args.save_dir={tmp_path / 'logs'}",
                *TINY_TRAINER,
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if "error:" in line]
    assert line.startswith("mts-lightning fit: error: ") and str(files[3]) in line
    assert "Traceback" not in err


@pytest.mark.parametrize("subcommand", ["fit", "validate", "test"])
def test_data_error_raised_while_running_exits_with_one_line(
    tmp_path, capsys, monkeypatch, subcommand
):
    from mts_lightning.data.errors import DataError

    def setup(self, stage=None):
        raise DataError("ravdess: no usable clip left in the val split (12 files skipped)")

    monkeypatch.setattr(SpectrogramDataModule, "setup", setup)
    with pytest.raises(SystemExit) as exit_info:
        cli_main(
            [
                subcommand,
                f"--config={CONFIGS / 'synthetic.yaml'}",
                *TINY_SYNTHETIC,
                f"--trainer.logger.init_args.save_dir={tmp_path}",
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.endswith(
        f"mts-lightning {subcommand}: error: DataError: ravdess: no usable clip left in the "
        "val split (12 files skipped)\n"
    )
    assert "Traceback" not in err


@pytest.mark.slow
@pytest.mark.e2e
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


@pytest.mark.slow
@pytest.mark.e2e
def test_reported_backbone_typo_from_the_command_line_is_one_line():
    """Issue 18, G, as reported: the console command, exit code 2, nothing but the error
    (after Lightning's seed line): no traceback, no usage, no warning about sys.argv."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "mts_lightning", "fit", "--config", "configs/synthetic.yaml"]
    result = subprocess.run(
        [*command, "--model.backbone_kwargs", "{conv_typ: conv}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert [line for line in result.stderr.splitlines() if not line.startswith("Seed set")] == [
        "mts-lightning fit: error: ValueError: backbone_kwargs: compact_cnn takes no argument "
        f"'conv_typ' (did you mean 'conv_type'?); it takes {COMPACT_CNN_ARGUMENTS}"
    ]


# ---------------------------------------------------------------------- configs
@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.parametrize("corpus", sorted(FIXTURES))
@pytest.mark.parametrize("variant", ["paper_conv", "paper_mts", "modern", "modern_conv"])
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
    conv_type = "conv" if variant.endswith("conv") else "mts"
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


@pytest.mark.slow
@pytest.mark.e2e
def test_killed_fit_resumes_to_the_uninterrupted_result(tmp_path):
    """A CLI fit killed with SIGKILL in the middle of an epoch, resumed with the README's
    command, ends where the uninterrupted run ends: weights, optimizer, metrics, callbacks."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    settings = [
        f"--config={CONFIGS / 'synthetic.yaml'}",
        *TINY_SYNTHETIC,
        *synthetic_corpus(clips_per_speaker=12),  # 6 training batches per epoch
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
        assert _restored(a[key], reference) == _restored(b[key], run), key
    assert _read_rows(metrics) == _read_rows(reference / "metrics.csv")


def _restored(state: object, run: Path) -> str:
    """A checkpoint entry as a resumed run restores it, with the run folder written ``RUN``.
    ``ModelCheckpoint`` does not restore ``current_score`` (the score of its latest save), so
    after an epoch that saves nothing an uninterrupted run still holds the score of the one
    before while a resumed run holds None; it decides nothing a later epoch does."""
    text = str(state).replace(str(run), "RUN")
    return re.sub(r"'current_score': (tensor\([^)]*\)|None)", "'current_score': -", text)


# ---------------------------------------------------------------------- plateau schedulers
PLATEAU = ["--model.lr_scheduler=torch.optim.lr_scheduler.ReduceLROnPlateau"]


@pytest.fixture
def training_steps(monkeypatch):
    """A list that gains one entry per training step of EmotionClassifier."""
    from mts_lightning.module import EmotionClassifier

    steps, training_step = [], EmotionClassifier.training_step

    def counted(self, batch, batch_idx):
        steps.append(batch_idx)
        return training_step(self, batch, batch_idx)

    monkeypatch.setattr(EmotionClassifier, "training_step", counted)
    return steps


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "frequency", "scheduler_steps"),
    [
        # Validation after epochs 1 and 3: the scheduler steps then, and only then.
        (["--trainer.check_val_every_n_epoch=2"], 2, 2),
        # Validation every 2 batches, counted across epochs of 2 batches: a step after each.
        (
            [
                "--trainer.check_val_every_n_epoch=null",
                "--trainer.val_check_interval=2",
                "--model.lr_scheduler_interval=step",
            ],
            2,
            4,
        ),
        # Validation twice an epoch (after batch 1 and 2), epoch steps after the second.
        (["--trainer.val_check_interval=0.5"], 1, 4),
    ],
    ids=["every_2_epochs", "every_2_batches", "twice_an_epoch"],
)
def test_plateau_scheduler_steps_after_validations(
    tmp_path, monkeypatch, args, frequency, scheduler_steps
):
    # Early stopping is not under test: a tiny run's val UA can stay flat for the config's
    # patience (6 validations) and stop an epoch midway, before its scheduler step.
    for hook in ("on_validation_end", "on_train_epoch_end"):
        monkeypatch.setattr(EarlyStopping, hook, lambda self, trainer, module: None)
    cli = cli_main(
        [
            "fit",
            f"--config={CONFIGS / 'synthetic.yaml'}",
            *TINY_SYNTHETIC,
            *TINY_TRAINER,
            "--trainer.max_epochs=4",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            *PLATEAU,
            *args,
        ]
    )
    assert cli.trainer.current_epoch == 4
    (config,) = cli.trainer.lr_scheduler_configs
    assert (config.monitor, config.frequency, config.strict) == ("val/loss", frequency, True)
    assert config.scheduler.last_epoch == scheduler_steps  # one per step() call


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "fix"),
    [
        (
            ["--trainer.check_val_every_n_epoch=null", "--trainer.val_check_interval=2"],
            "set --trainer.check_val_every_n_epoch N",
        ),
        (
            ["--trainer.check_val_every_n_epoch=2", "--model.lr_scheduler_interval=step"],
            "use --model.lr_scheduler_interval epoch",
        ),
        (
            [
                "--trainer.check_val_every_n_epoch=null",
                "--trainer.val_check_interval=3",
                "--model.lr_scheduler_interval=step",
            ],
            "use a val_check_interval that divides 2",
        ),
        (["--trainer.limit_val_batches=0"], "--model.lr_scheduler_monitor train/loss"),
    ],
    ids=["epoch_steps_batch_validation", "step_with_every_2_epochs", "misaligned", "no_val"],
)
def test_plateau_scheduler_that_cannot_follow_validation_is_refused_before_training(
    tmp_path, capsys, training_steps, args, fix
):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(
            [
                "fit",
                f"--config={CONFIGS / 'synthetic.yaml'}",
                *TINY_SYNTHETIC,
                *TINY_TRAINER,
                f"--trainer.logger.init_args.save_dir={tmp_path}",
                *PLATEAU,
                *args,
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if "error:" in line]
    assert line.startswith("mts-lightning fit: error: MisconfigurationException: the lr scheduler")
    assert fix in line and "Traceback" not in err
    assert training_steps == []


def test_every_shipped_config_keeps_the_latest_checkpoint():
    """``checkpoints/last.ckpt`` after every epoch, whatever the best one: a ModelCheckpoint
    without a monitor, named ``last`` (``save_last`` alone follows the best checkpoint)."""
    configs = [
        p
        for p in sorted(CONFIGS.rglob("*.yaml"))
        if "loggers" not in p.parts and "experiments" not in p.parts  # those build on these
    ]
    for path in configs:
        trainer = yaml.safe_load(path.read_text()).get("trainer") or {}
        latest = [
            cb.get("init_args") or {}
            for cb in trainer.get("callbacks") or []
            if cb["class_path"].endswith("ModelCheckpoint")
        ]
        assert {"filename": "last", "enable_version_counter": False} in latest, path
        assert not any(args.get("save_last") for args in latest), path
    assert len(configs) >= 20


def test_config_with_the_old_flat_mts_keys_shows_the_new_spelling(tmp_path, capsys):
    config = yaml.safe_load((CONFIGS / "synthetic.yaml").read_text())
    config["model"]["backbone_kwargs"] = {
        "conv_type": "mts",
        "kernel_sharing": "autograd",
        "scale_factors": [[0.7, 1.0], [1.428, 1.0]],
    }
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", f"--config={old}", f"--trainer.logger.init_args.save_dir={tmp_path}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.endswith(
        "mts-lightning fit: error: ValueError: backbone_kwargs: kernel_sharing, scale_factors now "
        "go in one mapping `mts`; write backbone_kwargs: {conv_type: mts, mts: {kernel_sharing: "
        "autograd, scale_factors: [[0.7, 1.0], [1.428, 1.0]]}} (in Python: mts={'kernel_sharing': "
        "'autograd', 'scale_factors': [[0.7, 1.0], [1.428, 1.0]]})\n"
    )
    # The new spelling, as written in the message, builds the model.
    config["model"]["backbone_kwargs"] = yaml.safe_load(
        "{conv_type: mts, mts: {kernel_sharing: autograd, scale_factors: [[0.7, 1.0], [1.428, 1.0]]}}"
    )
    new = tmp_path / "new.yaml"
    new.write_text(yaml.safe_dump(config))
    cli = MTSLightningCLI(args=[f"--config={new}", *TINY_SYNTHETIC], run=False)
    layer = cli.model.backbone.features[0]
    assert layer.kernel_sharing == "autograd" and layer.scale_factors == ((0.7, 1.0), (1.428, 1.0))


@pytest.mark.parametrize("mode", ["average", "average_updates", "autograd"])
def test_readme_backbone_overrides_build_the_model(mode):
    """The documentation's ``--model.backbone_kwargs "..."`` lines, as written there."""
    text = "".join(page.read_text() for page in doc_pages.pages())
    overrides = re.findall(r'--model\.backbone_kwargs "([^"]+)"', text)
    assert len(overrides) >= 1  # the kernel-sharing loop under "Results"
    for override in overrides:
        args = [f"--config={CONFIGS / 'synthetic.yaml'}", *TINY_SYNTHETIC]
        value = override.replace("$m", mode).replace("average_updates", mode)
        cli = MTSLightningCLI(args=[*args, "--model.backbone_kwargs", value], run=False)
        assert cli.model.backbone.features[0].kernel_sharing == mode


# ---------------------------------------------------------------------- one folder per run
def _logger(kind: str, save_dir: Path) -> dict:
    classes = {"csv": "CSVLogger", "tensorboard": "TensorBoardLogger", "wandb": "WandbLogger"}
    init_args = {"save_dir": str(save_dir), "name": None}
    if kind == "wandb":
        init_args.update(project="mts-lightning", offline=True)
    return {"class_path": f"lightning.pytorch.loggers.{classes[kind]}", "init_args": init_args}


@pytest.mark.slow
@pytest.mark.parametrize(
    "loggers",
    [
        ("csv",),  # configs/loggers/csv.yaml
        ("tensorboard",),  # configs/loggers/tensorboard.yaml
        ("csv", "wandb"),  # configs/loggers/wandb.yaml
        ("wandb", "csv"),
        ("wandb",),
    ],
    ids="+".join,
)
def test_every_file_of_a_run_lands_in_its_folder(tmp_path, capsys, loggers):
    save_dir = tmp_path / "logs"
    shipped = {("csv",): "csv", ("tensorboard",): "tensorboard", ("csv", "wandb"): "wandb"}
    if loggers in shipped:  # the shipped logger config, as users compose it
        logger_args = [
            f"--config={CONFIGS / 'loggers' / f'{shipped[loggers]}.yaml'}",
            *(f"--trainer.logger.init_args.save_dir={save_dir}" for _ in loggers[:1]),
        ]
        if len(loggers) > 1:
            logger_args = [
                f"--config={CONFIGS / 'loggers' / 'wandb.yaml'}",
                f"--trainer.logger={yaml.safe_dump([_logger(k, save_dir) for k in loggers])}",
            ]
    else:
        logger_args = [
            f"--trainer.logger={yaml.safe_dump([_logger(k, save_dir) for k in loggers])}"
        ]
    fit = cli_main(
        [
            "fit",
            f"--config={CONFIGS / 'synthetic.yaml'}",
            *logger_args,
            *TINY_SYNTHETIC,
            *TINY_TRAINER,
        ]
    )
    out = capsys.readouterr().out
    run = Path(out.split("run folder (logs): ")[1].split("\n")[0])
    assert run.parent.parent == save_dir
    best = Path(fit.trainer.checkpoint_callback.best_model_path)
    expected = {
        "config.yaml",
        f"checkpoints/{best.name}",
        "checkpoints/last.ckpt",
        "confusion_matrix/val_epoch000.png",
        "stretch_usage.png",
        "split_speakers.json",
    } | ({"metrics.csv"} if "csv" in loggers else set())
    files = {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()}
    assert expected <= files
    listed = {line.strip() for line in out.splitlines() if line.startswith("    ")}
    assert {str(run / name) for name in expected} <= listed
    # Nothing of the run anywhere else under save_dir, but W&B's own run files.
    elsewhere = [
        p
        for p in save_dir.rglob("*")
        if p.is_file() and run not in p.parents and "wandb" not in p.parts
    ]
    assert elsewhere == []

    capsys.readouterr()
    cli_main(
        [
            "predict",
            f"--config={run / 'config.yaml'}",
            f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
            f"--data.predict_paths=[{make_ravdess_folder(tmp_path / 'clips', [1], [1])[0]}]",
        ]
    )
    written = Path(capsys.readouterr().out.split("predictions to ")[-1].strip())
    predict_run = written.parent
    assert written.name == "predictions.csv" and predict_run != run
    assert predict_run.parent == run.parent and (predict_run / "config.yaml").is_file()


# ---------------------------------------------------------------------- test-time settings
def fit_tiny(tmp_path: Path, *extra: str) -> tuple[Path, Path]:
    """A tiny synthetic fit; returns its saved config and best checkpoint."""
    save_dir = tmp_path / "logs"
    logger = f"--trainer.logger.init_args.save_dir={save_dir}"
    fit = cli_main(
        [
            "fit",
            f"--config={CONFIGS / 'synthetic.yaml'}",
            *TINY_SYNTHETIC,
            *TINY_TRAINER,
            logger,
            *extra,
        ]
    )
    run = run_dirs(save_dir, "synthetic")[-1]
    return run / "config.yaml", Path(fit.trainer.checkpoint_callback.best_model_path)


def run_test(config: Path, best: Path, *args: str) -> MTSLightningCLI:
    return cli_main(
        [
            "test",
            f"--config={config}",
            f"--ckpt_path={best}",
            "--trainer.logger=false",
            f"--trainer.default_root_dir={config.parent / 'tests'}",
            "--trainer.enable_progress_bar=false",
            *args,
        ]
    )


def refused(capsys, call, *words: str) -> None:
    """``call`` exits with code 2 and one error line holding every word."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        call()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mts-lightning test: error:") and len(err.splitlines()) == 1, err
    for word in words:
        assert word in err, (word, err)


@pytest.mark.slow
def test_test_tempo_and_input_length_follow_the_user(tmp_path, capsys):
    """A globally pooled model (compact_cnn): test tempo, duration and segments as given."""
    config, best = fit_tiny(tmp_path)
    trained = torch.load(best, weights_only=True, map_location="cpu")["SpectrogramDataModule"]

    slow = run_test(config, best, "--data.test_tempo", "0.7")
    data = slow.datamodule
    assert data.hparams.test_tempo == 0.7 and data.train_dataset is None
    assert data.val_dataset is None
    # 1 s synthetic test clips, 1/0.7 times longer before the features (then cropped to 1 s).
    lengths = {np.load(item.feature).shape[0] for item in data.test_dataset.items}
    assert lengths == {1 + round(16000 / 0.7) // 512}
    assert data.frames == 1 + 16000 // 512
    assert torch.equal(data.model_input.mean, torch.as_tensor(trained["norm_mean"]))
    assert torch.equal(data.model_input.std, torch.as_tensor(trained["norm_std"]).clamp_min(1e-5))
    assert {"test/WA", "test/UA", "test/macro_F1"} <= set(slow.trainer.callback_metrics)

    longer = run_test(config, best, "--data.duration=2.0")
    assert longer.datamodule.hparams.duration == 2.0
    assert longer.datamodule.frames == 1 + 32000 // 512
    assert "test/WA" in longer.trainer.callback_metrics

    segmented = run_test(config, best, "--data.segment_duration=0.5", "--data.test_tempo=0.5")
    assert segmented.datamodule.segmented and segmented.datamodule.frames == 1 + 8000 // 512
    assert "test/UA" in segmented.trainer.callback_metrics

    # predict with segments: one row per file
    audio = make_ravdess_folder(tmp_path / "audio", actors=[1], emotions=[1, 2], seconds=1.5)
    output = tmp_path / "predictions.csv"
    cli_main(
        [
            "predict",
            f"--config={config}",
            f"--ckpt_path={best}",
            "--trainer.logger=false",
            f"--trainer.default_root_dir={tmp_path / 'predict'}",
            "--data.segment_duration=0.5",
            f"--data.predict_paths=[{tmp_path / 'audio'}]",
            f"--prediction_writer.output_path={output}",
        ]
    )
    check_predictions(read_csv(output), [str(p) for p in audio], [f"pattern_{c}" for c in range(6)])

    # Settings that change the model's input or classes are refused, naming both values.
    for args, words in [
        (["--data.features.n_mels=32"], ("data.features.n_mels", "64", "32")),
        (["--data.features.kind=stft"], ("data.features.kind", "'logmel'", "'stft'")),
        (["--data.features.sample_rate", "8000"], ("data.features.sample_rate", "16000", "8000")),
        (["--data.corpus_options.num_classes=4"], ("data.corpus_options.num_classes", "6", "4")),
    ]:
        refused(capsys, lambda args=args: run_test(config, best, *args), *words)

    # Not given on the command line: from the checkpoint, as before (a config file that
    # differs does not count as explicit: a run's config.yaml holds every setting).
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"data": {"features": {"n_mels": 32}, "duration": 2.0}}))
    restored = run_test(config, best, f"--config={other}")
    data = restored.datamodule
    assert data.feature_config.n_mels == 64 and data.hparams.duration == 1.0


@pytest.mark.slow
def test_a_fixed_size_model_refuses_another_input_length(tmp_path, capsys):
    config, best = fit_tiny(tmp_path, "--model.backbone=paper_1conv_1ch")
    call = lambda: run_test(config, best, "--data.duration=2.0")  # noqa: E731
    refused(capsys, call, "data.duration", "1.0", "2.0", "PaperSingleConvNet")
    call = lambda: run_test(config, best, "--data.segment_duration=0.5")  # noqa: E731
    refused(capsys, call, "data.segment_duration", "None", "0.5")
    # Segments of the trained length, and a test tempo, keep the input: accepted.
    same = run_test(config, best, "--data.segment_duration=1.0", "--data.test_tempo=1.4")
    assert same.datamodule.input_shape == (1, 32, 64)
    assert "test/WA" in same.trainer.callback_metrics


@pytest.mark.slow
def test_readme_rate_robustness_command_runs_as_written(tmp_path, monkeypatch):
    """The training page's `fit` line with `augment.tempos` and `pad_mode`, on a RAVDESS-named
    folder in place of /data/RAVDESS; the sizes shrunk, the settings under test as written."""
    section = doc_pages.section("training.md", "## Training settings for speaking-rate robustness")
    command = doc_pages.first_block(section, "bash")
    argv = shlex.split(command.split("#")[0].replace("\\\n", " "))
    assert argv[:2] == ["mts-lightning", "fit"]
    make_ravdess_folder(tmp_path / "RAVDESS", actors=range(1, 9), emotions=range(1, 9))
    monkeypatch.chdir(REPO)
    args = [a.replace("/data/RAVDESS", str(tmp_path / "RAVDESS")) for a in argv[2:]]
    fit = cli_main(
        [
            "fit",
            *args,
            "--data.duration=1.0",
            "--data.batch_size=8",
            "--data.num_workers=0",
            f"--data.cache_dir={tmp_path / 'cache'}",
            f"--trainer.logger.init_args.save_dir={tmp_path / 'logs'}",
            *TINY_TRAINER,
        ]
    )
    data = fit.datamodule
    assert data.augment.tempos == [0.7, 0.85, 1.0, 1.2, 1.4] and data.hparams.pad_mode == "repeat"
    assert all(len(item.retimed) == 5 for item in data.train_dataset.items)
    saved = torch.load(fit.trainer.checkpoint_callback.best_model_path, weights_only=True)
    assert saved["datamodule_hyper_parameters"]["pad_mode"] == "repeat"
