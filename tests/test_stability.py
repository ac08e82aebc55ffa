"""benchmarks/stability.py: the spread it reports, written out, and one run as a user runs it
(shrunk: one epoch, a tiny corpus, one variant)."""

from __future__ import annotations

import csv
import importlib.util
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "stability.py"


def load_script():
    spec = importlib.util.spec_from_file_location("stability", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rows(variant, uas, condition="ref"):
    return [
        {"variant": variant, "fold": 0, "seed": seed, "condition": condition, "UA": ua}
        for seed, ua in enumerate(uas)
    ]


def test_spread_written_out():
    stability = load_script()
    results = {
        1: rows("mts", [0.9, 0.8, 0.7]) + rows("mts", [0.1, 0.1, 0.1], "other"),
        2: rows("mts", [0.9, 0.6, 0.7]),
    }
    (row,) = stability.spread(results, "ref", ["mts"])
    assert row["runs"] == 6
    assert row["mean_UA"] == pytest.approx(statistics.fmean([0.9, 0.8, 0.7, 0.9, 0.6, 0.7]))
    assert row["std_threads_1"] == pytest.approx(0.1)
    assert row["std_threads_2"] == pytest.approx(statistics.stdev([0.9, 0.6, 0.7]))
    assert row["std_all"] == pytest.approx(statistics.stdev([0.9, 0.8, 0.7, 0.9, 0.6, 0.7]))
    assert row["max_thread_change"] == pytest.approx(0.2)  # seed 1: 0.8 against 0.6
    assert row["UA_threads_2"] == "0.900 0.600 0.700"


def test_runs_as_a_user_runs_it(tmp_path):
    out = tmp_path / "out"
    command = [
        sys.executable,
        str(SCRIPT),
        f"--output_dir={out}",
        "--threads",
        "1",
        "2",
        "--variants",
        "conv_twin",
        "--",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--data.corpus_options.num_speakers=5",
        "--data.corpus_options.clips_per_speaker=6",
        "--data.corpus_options.duration=1.0",
        "--data.duration=1.0",
        "--data.batch_size=4",
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "test UA at stretch_0.6-1.6" in done.stdout
    with open(out / "stability.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["variant"] for r in table] == ["conv_twin"]
    assert int(table[0]["runs"]) == 6  # 3 seeds x 2 thread counts
    for threads in (1, 2):
        assert (out / f"threads_{threads}" / "results.csv").is_file()


def test_a_failed_experiment_is_one_line(tmp_path):
    command = [sys.executable, str(SCRIPT), f"--output_dir={tmp_path}", "--threads", "1"]
    done = subprocess.run(
        [*command, "--", "--data.corpus_options.clips_per_speaker=1"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "stability.py: the experiment with 1 thread(s) failed (exit 2)"
    )
