"""benchmarks/rate_shift.py run as a user runs it, on a run trained here for a few steps."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mts_lightning.cli import cli_main
from tests.helpers.data_fixtures import make_ravdess_folder

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("rate_shift")
    corpus = root / "corpus"
    make_ravdess_folder(corpus, actors=range(1, 9), emotions=(1, 4, 5), seconds=0.6)
    argv, sys.argv = sys.argv, ["mts-lightning"]
    try:
        fit = cli_main(
            [
                "fit",
                f"--config={REPO / 'configs' / 'ravdess' / 'modern.yaml'}",
                f"--data.root={corpus}",
                "--data.duration=1.0",
                "--data.batch_size=8",
                "--data.num_workers=0",
                "--data.num_folds=4",
                f"--data.cache_dir={root / 'cache'}",
                f"--trainer.logger.init_args.save_dir={root / 'logs'}",
                "--trainer.max_epochs=1",
                "--trainer.enable_progress_bar=false",
                "--trainer.enable_model_summary=false",
            ]
        )
    finally:
        sys.argv = argv
    return Path(fit.trainer.log_dir), corpus


def test_rate_shift_reports_ua_and_prediction_shares_per_tempo(run, tmp_path):
    folder, corpus = run
    out = tmp_path / "shift.json"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "rate_shift.py"),
            "--root",
            str(corpus),
            "--tempos",
            "0.7,1.0,1.4",
            "--json",
            str(out),
            str(folder),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (result,) = json.loads(out.read_text())
    test_speakers = json.loads((folder / "split_speakers.json").read_text())["test"]
    assert len(test_speakers) == 2
    # 2 test actors x one clip of each of the 3 emotions.
    shares = {k: v for k, v in result["true_share"].items() if v}
    assert shares == pytest.approx({"neutral": 1 / 3, "sad": 1 / 3, "angry": 1 / 3})
    assert list(result["tempos"]) == ["0.7", "1", "1.4"]
    for row in result["tempos"].values():
        assert 0 <= row["UA"] <= 1 and sum(row["predicted_share"].values()) == pytest.approx(1)
        assert 0 <= row["shift"] <= 1
    assert result["tempos"]["1"]["shift"] == 0
    assert "truth" in done.stdout and "shift" in done.stdout


def load_script():
    spec = importlib.util.spec_from_file_location(
        "rate_shift", REPO / "benchmarks" / "rate_shift.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rate_shift_refuses_bad_arguments(run, tmp_path, capsys):
    folder, corpus = run
    script = load_script()
    for args, message in (
        (["--root", str(corpus), "--tempos", "0.7,fast", str(folder)], "--tempos must be"),
        (["--root", str(corpus), "--tempos", "0,1", str(folder)], "--tempos must be"),
        (["--root", str(corpus), "--tempos", "0.7,1000", str(folder)], "from 0.25 to 4"),
        (["--root", str(corpus), str(tmp_path / "nowhere")], "does not exist"),
        (["--root", str(corpus), str(tmp_path)], "no checkpoints"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            script.main(args)
        said = capsys.readouterr().err + str(exit_info.value.code)
        assert exit_info.value.code != 0 and message in said, (args, said)
