"""benchmarks/twins.py and benchmarks/linear_probe.py run as a user runs them."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.data_fixtures import make_ravdess_folder

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]


def run_script(name: str, *args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MTS_LIGHTNING_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / name), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )


def test_twins_prints_equal_cost_and_step_ratios(tmp_path):
    done = run_script("twins.py", "--rounds", "1", "--batch", "2", cache=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {
        line[:18].strip(): line[18:].split()
        for line in done.stdout.splitlines()[2:]
        if line.strip()
    }
    assert list(rows) == [
        "mts",
        "conv twin x1.74",
        "mts wide",
        "conv twin x2.34",
        "mts stats",
        "mts softmax",
        "long twin",
        "conv x1",
        "bag of frames",
    ]
    params, macs, macs_ratio, step_ms, step_ratio, epoch_s = rows["mts"]
    assert (macs_ratio, step_ratio) == ("1.00", "1.00") and float(step_ms) > 0
    assert float(epoch_s) == pytest.approx(10 * float(step_ms) / 1e3, abs=0.01)
    # Four branches against three; the statistics head adds no convolution.
    assert float(rows["mts wide"][2]) > 1.2
    assert rows["mts stats"][2] == rows["mts softmax"][2] == "1.00"
    # Kernels of 7 frames instead of 5: 7/5 of the plain network's multiply-adds.
    long_ratio = float(rows["long twin"][1]) / float(rows["conv x1"][1])
    assert long_ratio == pytest.approx(7 / 5, rel=0.05)
    # Each twin's multiply-adds within 1% of its MTS network's; the plain network a third.
    assert abs(float(rows["conv twin x1.74"][1]) / float(macs) - 1) < 0.01
    assert abs(float(rows["conv twin x2.34"][1]) / float(rows["mts wide"][1]) - 1) < 0.01
    assert float(rows["conv x1"][2]) < 0.5
    assert rows["conv x1"][0] == params  # same channels, same parameters as the MTS network


def test_linear_probe_writes_a_test_ua_per_fold_and_tempo(tmp_path):
    corpus = tmp_path / "corpus"
    make_ravdess_folder(corpus, actors=range(1, 9), emotions=(1, 3, 4, 5), statements=(1, 2))
    output = tmp_path / "probe.csv"
    done = run_script(
        "linear_probe.py",
        f"--root={corpus}",
        "--folds",
        "0",
        "1",
        "--tempos",
        "0.5",
        "1.0",
        "--train_tempos",
        "1.0",
        f"--output={output}",
        cache=tmp_path / "cache",
    )
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(output.open()))
    assert [(r["fold"], r["tempo"]) for r in rows] == [
        ("0", "0.5"),
        ("0", "1.0"),
        ("1", "0.5"),
        ("1", "1.0"),
    ]
    assert all(0.0 <= float(r["UA"]) <= 1.0 for r in rows)
    assert "tempo 1: mean test UA" in done.stdout
