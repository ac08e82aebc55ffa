"""``mts-lightning experiment`` end to end on tiny synthetic settings: results, summary and
figures; killed by a signal and restarted; collect on runs written by separate commands;
the feature cache shared by the runs; submitit's local executor; a W&B summary run."""

from __future__ import annotations

import csv
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mts_lightning.commands import main
from mts_lightning.experiment.runner import RESULT_COLUMNS, lock_path, read_results, run_holder
from tests.helpers.tiny_runs import TINY_SYNTHETIC, TINY_TRAINER
from tests.helpers.wandb_records import read_wandb_records

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
TINY = [*TINY_SYNTHETIC, *TINY_TRAINER, "--model.confusion_matrix=false"]
CONDITIONS = [
    {"name": "seen", "overrides": ["--data.corpus_options.test_stretch=[0.6, 1.6]"], "x": 1.0},
    {"name": "fast", "overrides": ["--data.corpus_options.test_stretch=[0.35, 0.45]"], "x": 0.4},
]


def write_experiment(folder: Path, configs: list[str] | None = None, **settings) -> Path:
    spec = {
        "configs": configs or [str(REPO / "configs" / "synthetic.yaml")],
        "overrides": ["--trainer.max_time=null", "--trainer.enable_progress_bar=false"],
        "variants": {"mts": [], "conv": ["--model.backbone_kwargs={conv_type: conv}"]},
        "folds": [0, 1],
        "seeds": [0, 1],
        "conditions": CONDITIONS,
        "reference_condition": "seen",
        **settings,
    }
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def experiment(*args: str) -> None:
    main(["experiment", *args])


def results_without_paths(path: Path) -> list[dict]:
    return [
        {k: v for k, v in row.items() if k not in ("run_folder", "checkpoint")}
        for row in read_results(path)
    ]


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch, one_thread):
    monkeypatch.setattr(sys, "argv", ["mts-lightning"])


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    """2 variants x 2 folds x 2 seeds through the CLI in a subprocess, killed (SIGKILL) in the
    middle of a run, then the same command again in-process. Returns the folder, what the
    killed process had recorded, and the restart's output."""
    root = tmp_path_factory.mktemp("experiment")
    spec = write_experiment(root, conditions=CONDITIONS[:1])
    out = root / "out"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MTS_LIGHTNING_CACHE": str(root / "cache"),
        "WANDB_MODE": "offline",
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }
    command = [
        sys.executable,
        "-m",
        "mts_lightning",
        "experiment",
        f"--config={spec}",
        f"--output_dir={out}",
        "--",
        *TINY,
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            recorded = list(out.glob("runs/*/*/result.json"))
            started = [
                f for f in out.glob("runs/*/*") if f.is_dir() and not (f / "result.json").exists()
            ]
            if len(recorded) >= 2 and started:
                break
            assert process.poll() is None, process.stderr.read().decode()
            time.sleep(0.05)
        else:
            pytest.fail("the experiment recorded no run in 120 s")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    before = {p: (p.stat().st_mtime_ns, p.read_text()) for p in out.glob("runs/*/*/result.json")}
    partial = [f for f in out.glob("runs/*/*") if f.is_dir() and not (f / "result.json").exists()]
    assert partial, "the kill should have hit a run in progress"
    # The killed run's lock file stays behind; its lock does not (the OS released it).
    assert [run_holder(f) for f in partial] == [None] * len(partial)
    assert all(lock_path(f).is_file() for f in partial)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MTS_LIGHTNING_CACHE", str(root / "cache"))
        mp.setattr(sys, "argv", ["mts-lightning"])
        from contextlib import redirect_stdout
        from io import StringIO

        buffer = StringIO()
        with redirect_stdout(buffer):
            experiment(f"--config={spec}", f"--output_dir={out}", "--", *TINY)
    return spec, out, before, partial, buffer.getvalue()


def test_killed_experiment_finishes_without_redoing_recorded_runs(killed_and_resumed):
    spec, out, before, partial, output = killed_and_resumed
    assert f"8 runs (2 variants x folds x seeds), {len(before)} recorded already" in output
    for folder in partial:
        assert (
            f"{folder.parent.name} fold {folder.name[4]} seed {folder.name[-1]}: interrupted before; redone"
            in output
        )
    # The runs recorded before the kill are untouched, not run again.
    for path, (mtime, text) in before.items():
        assert path.stat().st_mtime_ns == mtime and path.read_text() == text
    records = sorted(out.glob("runs/*/*/result.json"))
    assert len(records) == 8
    assert not list(out.glob("runs/*/*.lock"))  # every claim given back
    rows = read_results(out / "results.csv")
    with open(out / "results.csv", newline="") as f:
        assert tuple(next(csv.reader(f))) == RESULT_COLUMNS
    assert [(r["variant"], r["fold"], r["seed"], r["condition"]) for r in rows] == [
        (v, f, s, "seen") for v in ("mts", "conv") for f in (0, 1) for s in (0, 1)
    ]
    for row in rows:
        assert 0.0 <= row["UA"] <= 1.0 and row["epochs"] == 1
        assert Path(row["checkpoint"]).is_file()
        assert (
            Path(row["run_folder"])
            == out / "runs" / row["variant"] / f"fold{row['fold']}_seed{row['seed']}"
        )
        assert (Path(row["run_folder"]) / "test" / row["condition"] / "config.yaml").is_file()
    summary = (out / "summary.md").read_text()
    assert "| seen | mts | 4 |" in summary and "| seen | conv | 4 |" in summary
    assert "| seen | mts | conv | 4 |" in summary  # the paired comparison, 4 (fold, seed) pairs
    with open(out / "summary.csv", newline="") as f:
        summary_rows = list(csv.DictReader(f))
    assert {r["runs"] for r in summary_rows} == {"4"} and len(summary_rows) == 2 * 3
    for figure in ("ua_by_condition.png", "ua_reference.png"):
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_collect_of_runs_from_separate_commands_equals_the_in_process_result(
    killed_and_resumed, tmp_path, capsys, monkeypatch
):
    spec, out, _, _, _ = killed_and_resumed
    monkeypatch.setenv("MTS_LIGHTNING_CACHE", str(out.parent / "cache"))
    elsewhere = tmp_path / "elsewhere"
    experiment(
        f"--config={spec}", f"--output_dir={elsewhere}", "--seeds", "1", "--dry-run", "--", *TINY
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"# then: mts-lightning experiment collect {elsewhere}"
    commands = [shlex.split(line) for line in lines[:-1]]
    assert len(commands) == 4 and all(
        c[:3] == ["mts-lightning", "experiment", "run"] for c in commands
    )
    for i, command in enumerate(commands):
        # Each run as if on another machine: its own output folder below `elsewhere`.
        command = [a.replace(str(elsewhere), str(elsewhere / f"machine{i}")) for a in command]
        main(command[1:])
    experiment("collect", str(elsewhere))
    assert "4 runs recorded." in capsys.readouterr().out
    expected = [r for r in results_without_paths(out / "results.csv") if r["seed"] == 1]
    assert results_without_paths(elsewhere / "results.csv") == expected
    # A collect of the in-process folder rebuilds its own results.
    before = (out / "summary.csv").read_text()
    experiment("collect", str(out))
    assert (out / "summary.csv").read_text() == before


def test_a_subset_command_keeps_every_recorded_run_in_the_tables(
    killed_and_resumed, tmp_path, capsys, monkeypatch
):
    """The reported case: `--folds F --seeds S` into a folder of other recorded runs (another
    process's, an earlier command's) rewrote results.csv and the summary with its own runs
    only. The tables cover the file's whole grid as far as it is recorded."""
    spec, recorded, _, _, _ = killed_and_resumed
    monkeypatch.setenv("MTS_LIGHTNING_CACHE", str(recorded.parent / "cache"))
    out = tmp_path / "out"
    shutil.copytree(recorded, out)
    experiment("collect", str(out))
    tables = ("results.csv", "summary.csv", "paired_differences.csv")
    complete = {name: (out / name).read_text() for name in tables}
    capsys.readouterr()
    experiment(
        f"--config={spec}", f"--output_dir={out}", "--variants", "conv", "--seeds", "1", "--", *TINY
    )
    printed = capsys.readouterr().out
    assert "2 runs (2 variants x folds x seeds), 2 recorded already, 0 to run" in printed
    assert "8 of 8 runs recorded." in printed and "Not finished" not in printed
    assert {name: (out / name).read_text() for name in tables} == complete

    # Its sibling: a variant added to the file after those runs were recorded. The new
    # variant's run joins the tables beside the 8 recorded with the file as it was.
    widened = write_experiment(
        tmp_path,
        conditions=CONDITIONS[:1],
        variants={
            "mts": [],
            "conv": ["--model.backbone_kwargs={conv_type: conv}"],
            "conv_wide": ["--model.backbone_kwargs={conv_type: conv, width_multiplier: 1.5}"],
        },
    )
    experiment(
        f"--config={widened}",
        f"--output_dir={out}",
        "--variants",
        "conv_wide",
        "--folds",
        "0",
        "--seeds",
        "0",
        "--",
        *TINY,
    )
    printed = capsys.readouterr().out
    assert "9 of 12 runs recorded." in printed and "Not finished" not in printed
    rows = read_results(out / "results.csv")
    assert [(r["variant"], r["fold"], r["seed"]) for r in rows] == [
        *((v, f, s) for v in ("mts", "conv") for f in (0, 1) for s in (0, 1)),
        ("conv_wide", 0, 0),
    ]
    summary = (out / "summary.md").read_text()
    assert "| seen | mts | 4 |" in summary and "| seen | conv_wide | 1 |" in summary


def test_runs_share_the_feature_cache(tmp_path, capsys, monkeypatch):
    from mts_lightning.data import cache

    computed = []
    original = cache._FeatureJobs.__getitem__
    monkeypatch.setattr(
        cache._FeatureJobs,
        "__getitem__",
        lambda self, i: computed.append(i) or original(self, i),
    )
    spec = write_experiment(tmp_path, conditions=CONDITIONS[:1], reference_condition="seen")
    args = [
        f"--config={spec}",
        f"--output_dir={tmp_path / 'out'}",
        "--variants",
        "conv",
        "--folds",
        "0",
    ]
    experiment(*args, "--seeds", "0", "--", *TINY)
    first = len(computed)
    assert first > 0
    experiment(*args, "--", *TINY)  # seed 1 now; seed 0 is recorded
    assert (
        "2 runs (2 variants x folds x seeds), 1 recorded already, 1 to run"
        in capsys.readouterr().out
    )
    assert len(computed) == first  # the second run computed no feature


def test_resume_with_other_settings_is_refused(tmp_path, capsys):
    spec = write_experiment(tmp_path, conditions=CONDITIONS[:1], reference_condition="seen")
    args = [
        f"--config={spec}",
        f"--output_dir={tmp_path / 'out'}",
        "--variants",
        "conv",
        "--folds",
        "0",
        "--seeds",
        "0",
    ]
    experiment(*args, "--", *TINY)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "experiment",
                "run",
                f"--config={spec}",
                f"--output_dir={tmp_path / 'out'}",
                "--variant=conv",
                "--fold=0",
                "--seed=0",
                "--",
                *TINY,
                "--trainer.max_epochs=2",
            ]
        )
    assert exit_info.value.code == 2
    assert "holds a run made with other settings" in capsys.readouterr().err


def test_submitit_local_launcher(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    spec = write_experiment(
        tmp_path, conditions=CONDITIONS[:1], reference_condition="seen", slurm={"timeout_min": 5}
    )
    out = tmp_path / "out"
    experiment(
        f"--config={spec}",
        f"--output_dir={out}",
        "--variants",
        "conv",
        "--folds",
        "0",
        "--seeds",
        "0",
        "--launcher",
        "submitit-local",
        "--",
        *TINY,
    )
    output = capsys.readouterr().out
    assert "submitted conv fold 0 seed 0: job" in output and "1 of 8 runs recorded." in output
    record = json.loads((out / "runs" / "conv" / "fold0_seed0" / "result.json").read_text())
    assert record["results"][0]["condition"] == "seen"
    assert list((out / "submitit").glob("*/*_result.pkl"))  # it ran as a submitit job
    assert len(read_results(out / "results.csv")) == 1 and (out / "summary.md").is_file()


def test_wandb_summary_run(tmp_path, capsys):
    configs = [
        str(REPO / "configs" / "synthetic_conv.yaml"),
        str(REPO / "configs" / "loggers" / "wandb.yaml"),
    ]
    spec = write_experiment(tmp_path, configs=configs, variants={"conv": []}, folds=[0], seeds=[0])
    out = tmp_path / "out"
    experiment(f"--config={spec}", f"--output_dir={out}", "--", *TINY)
    assert "W&B summary run:" in capsys.readouterr().out
    # The run's own W&B files are in its folder, the summary run beside the summary.
    assert list((out / "runs" / "conv" / "fold0_seed0" / "wandb").glob("offline-run-*"))
    (run_file,) = (out / "wandb").glob("offline-run-*/run-*.wandb")
    records = read_wandb_records(run_file)
    logged = {
        "/".join(item.nested_key) or item.key
        for r in records
        if r.WhichOneof("record_type") == "history"
        for item in r.history.item
    }
    types = {key.rsplit("/", 1)[0] for key in logged if key.endswith("/_type")}
    assert {
        "experiment/summary",
        "experiment/paired_differences",
        "experiment/ua_by_condition",
        "experiment/ua_reference",
        "experiment/ua_reference_chart_table",
    } <= types
    files = {
        f.path for r in records if r.WhichOneof("record_type") == "files" for f in r.files.files
    }
    assert any(p.startswith("media/table/experiment/summary") for p in files)
    assert any(p.startswith("media/images/experiment/ua_by_condition") for p in files)
    charts = {
        "/".join(item.nested_key) or item.key
        for r in records
        if r.WhichOneof("record_type") == "config"
        for item in r.config.update
    }
    assert "_wandb/visualize/experiment/ua_reference_chart" in charts  # the bar chart panel


def test_slurm_launcher_without_slurm_says_so(tmp_path, capsys):
    spec = write_experiment(tmp_path, conditions=CONDITIONS[:1], reference_condition="seen")
    with pytest.raises(SystemExit) as exit_info:
        experiment(
            f"--config={spec}",
            f"--output_dir={tmp_path / 'out'}",
            "--variants",
            "conv",
            "--folds",
            "0",
            "--seeds",
            "0",
            "--launcher",
            "slurm",
            "--",
            *TINY,
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--launcher: submitit cannot use 'slurm' here" in err and "srun" in err
    assert not list((tmp_path / "out").glob("runs/*/*"))


def test_a_tempo_sweep_tests_each_run_at_every_tempo(tmp_path, capsys, monkeypatch):
    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("MTS_LIGHTNING_CACHE", str(cache_dir))
    spec = write_experiment(
        tmp_path,
        variants={"conv": ["--model.backbone_kwargs={conv_type: conv}"]},
        folds=[0],
        seeds=[0],
        conditions=[],
        tempo_sweep=[0.7, 1.0, 1.4],
        reference_condition="tempo_1",
    )
    out = tmp_path / "out"
    experiment(f"--config={spec}", f"--output_dir={out}", "--", *TINY)
    rows = read_results(out / "results.csv")
    assert [r["condition"] for r in rows] == ["tempo_0.7", "tempo_1", "tempo_1.4"]
    assert all(0.0 <= r["UA"] <= 1.0 for r in rows)
    run = out / "runs" / "conv" / "fold0_seed0"
    for name, tempo in (("tempo_0.7", 0.7), ("tempo_1", 1.0), ("tempo_1.4", 1.4)):
        saved = yaml.safe_load((run / "test" / name / "config.yaml").read_text())
        assert saved["data"]["test_tempo"] == tempo
    # The test features at each tempo other than 1.0 are cached apart, keyed by it.
    tempos = sorted(
        json.loads(path.read_text()).get("tempo", 1.0)
        for path in cache_dir.glob("synthetic/*/settings.json")
    )
    assert tempos == [0.7, 1.0, 1.4]
    assert (out / "ua_by_condition.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| tempo_0.7 | conv | 1 |" in (out / "summary.md").read_text()
