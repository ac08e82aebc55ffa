"""Every shipped config runs end to end through the CLI, as a user runs it, for one tiny epoch.

Configs are found by globbing ``configs/``, so a new one is tested without touching this file:
each corpus config on a generated folder in that corpus's naming, the synthetic configs on the
embedded corpus, and each logger file in ``configs/loggers/`` composed with ``synthetic.yaml``.
Overrides change sizes only (epochs, batches, batch size, workers, synthetic speakers and
clips); every setting under test, such as ``duration: null``, stays as shipped.
(``configs/experiments/`` has tests of its own.)
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from mts_lightning.cli import cli_main
from tests.helpers.data_fixtures import (
    make_crema_d_folder,
    make_emodb_folder,
    make_iemocap_folder,
    make_ravdess_folder,
    make_savee_folder,
    make_tess_folder,
    write_tone,
)
from tests.helpers.tiny_runs import TINY_TRAINER, synthetic_corpus

pytestmark = pytest.mark.e2e

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
EXPERIMENTS = CONFIGS / "experiments"
LOGGERS = CONFIGS / "loggers"
RUN_CONFIGS = sorted(
    path
    for path in CONFIGS.rglob("*.yaml")
    if not path.is_relative_to(LOGGERS) and not path.is_relative_to(EXPERIMENTS)
)
LOGGER_CONFIGS = sorted(LOGGERS.glob("*.yaml"))

#: Fixture clips last 1 s, except one of 1.25 s: the length ``duration: null`` pads to.
SECONDS, LONGEST = 1.0, 1.25
#: Per corpus, a writer of the smallest folder that every shipped split of it can divide:
#: 5 speakers for 5 speaker folds, 4 words per TESS speaker and class for its halves, the 5
#: IEMOCAP sessions.
FOLDERS: dict[str, Callable[[Path], list[Path]]] = {
    "ravdess": lambda root: make_ravdess_folder(
        root, actors=range(1, 6), emotions=(1, 5), seconds=SECONDS
    ),
    "crema_d": lambda root: make_crema_d_folder(
        root, actors=range(1001, 1006), codes=("ANG", "SAD"), seconds=SECONDS
    ),
    "emodb": lambda root: make_emodb_folder(
        root, speakers=("03", "08", "09", "10", "11"), letters="WT", seconds=SECONDS
    ),
    "tess": lambda root: make_tess_folder(
        root, words=("back", "bar", "base", "bath"), emotions=("angry", "sad"), seconds=SECONDS
    ),
    "savee": lambda root: make_savee_folder(root, codes=("a", "sa"), seconds=SECONDS),
    "iemocap": lambda root: make_iemocap_folder(root, codes=("neu", "ang"), seconds=SECONDS),
}
SIZE = [
    *TINY_TRAINER,
    "--trainer.limit_val_batches=2",
    "--data.batch_size=4",
    "--data.num_workers=0",
]
# Five speakers for the shipped five folds; the clips keep the shipped duration.
SYNTHETIC_SIZE = synthetic_corpus(speakers=5, seconds=None)


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch, one_thread, tmp_path):
    """No pytest arguments seen by the CLI; relative log folders land in the test's folder."""
    monkeypatch.setattr(sys, "argv", ["mts-lightning"])
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def corpus_folder(tmp_path_factory) -> Callable[[str], Path]:
    """The fixture folder of a corpus, written once per test session."""
    folders: dict[str, Path] = {}

    def folder(corpus: str) -> Path:
        if corpus not in FOLDERS:
            pytest.fail(f"no fixture folder for corpus {corpus!r}: add a writer to FOLDERS")
        if corpus not in folders:
            root = tmp_path_factory.mktemp(corpus)
            files = FOLDERS[corpus](root)
            write_tone(files[0], seconds=LONGEST)
            folders[corpus] = root
        return folders[corpus]

    return folder


def data_settings(config: Path) -> dict:
    return yaml.safe_load(config.read_text())["data"]


def check_run(cli, settings: dict) -> Path:
    """One epoch trained and validated, its files in one run folder, the data as shipped."""
    trainer, datamodule = cli.trainer, cli.datamodule
    assert trainer.current_epoch == 1 and trainer.global_step > 0
    assert {"val/UA", "val/loss"} <= set(trainer.callback_metrics)
    run = Path(trainer.log_dir)
    assert (run / "config.yaml").is_file() and (run / "split_speakers.json").is_file()
    assert list((run / "checkpoints").glob("*.ckpt"))
    for key in ("corpus", "features", "split", "duration", "segment_duration"):
        used = datamodule.hparams[key]
        shipped = settings.get(key, used)
        if isinstance(shipped, dict):  # a group: the fields the config sets
            used = {field: used[field] for field in shipped}
        assert used == shipped, key
    return run


@pytest.mark.parametrize("config", RUN_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_shipped_config_runs_end_to_end(config, corpus_folder):
    settings = data_settings(config)
    corpus = settings.get("corpus", "synthetic")
    if corpus == "synthetic":
        extra = SYNTHETIC_SIZE
    else:
        extra = [f"--data.root={corpus_folder(corpus)}"]
    cli = cli_main(["fit", f"--config={config}", *extra, *SIZE])
    check_run(cli, settings)
    datamodule = cli.datamodule
    if settings.get("segment_duration") is None and settings.get("duration", 3.0) is None:
        # padded to the longest clip of the folder
        expected = datamodule.feature_config.seconds_to_frames(LONGEST)
        assert datamodule.input_shape[1] == expected


@pytest.mark.parametrize("logger", LOGGER_CONFIGS, ids=lambda p: p.stem)
def test_logger_config_composed_with_synthetic_runs(logger):
    config = CONFIGS / "synthetic.yaml"
    cli = cli_main(["fit", f"--config={config}", f"--config={logger}", *SYNTHETIC_SIZE, *SIZE])
    run = check_run(cli, data_settings(config))
    assert run.parts[-3:-1] == ("lightning_logs", "synthetic")
