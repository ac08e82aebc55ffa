"""Every shipped experiment file, run as a user runs it, shrunk in size only (tiny corpus,
one epoch, a few batches, one fold and one seed): every variant and every test condition."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from mts_lightning.commands import main
from mts_lightning.experiment import load_spec
from mts_lightning.experiment.runner import read_results
from tests.helpers.data_fixtures import make_iemocap_folder, make_ravdess_folder
from tests.helpers.tiny_runs import TINY_SYNTHETIC, TINY_TRAINER

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

EXPERIMENTS = Path(__file__).resolve().parents[2] / "configs" / "experiments"
FILE_CORPUS = ["--data.num_workers=0", "--data.batch_size=8"]
CORPORA = {
    "ravdess_conv_vs_mts.yaml": (
        lambda root: make_ravdess_folder(root, actors=range(1, 11), emotions=range(1, 9)),
        ["--data.duration=1.0"],
    ),
    "iemocap_conv_vs_mts.yaml": (make_iemocap_folder, ["--data.segment_duration=1.0"]),
    # The espeak-ng corpus of the file's header: 4 emotions in RAVDESS naming.
    "speaking_rate_speech.yaml": (
        lambda root: make_ravdess_folder(root, actors=range(1, 9), emotions=(1, 3, 4, 5)),
        ["--data.duration=1.0"],
    ),
    "stability_speech.yaml": (
        lambda root: make_ravdess_folder(root, actors=range(1, 9), emotions=(1, 3, 4, 5)),
        ["--data.duration=1.0"],
    ),
    # 8 voices: 4 folds of 2, 4 training voices, so a quarter keeps one.
    "twins_speech.yaml": (
        lambda root: make_ravdess_folder(root, actors=range(1, 9), emotions=(1, 3, 4, 5)),
        ["--data.duration=1.0"],
    ),
    # 8 voices again: a quarter of 4 training voices keeps one.
    "verdict_speech.yaml": (
        lambda root: make_ravdess_folder(root, actors=range(1, 9), emotions=(1, 3, 4, 5)),
        ["--data.duration=1.0"],
    ),
}
#: The screenings of the fair twins: each network in each regime.
TWINS = [
    f"{network}{regime}"
    for regime in ("", "_no_tempo", "_half", "_quarter")
    for network in ("mts", "conv_twin", "long_twin", "mts_wide")
]


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch, one_thread):
    monkeypatch.setattr(sys, "argv", ["mts-lightning"])


def run_shipped(path: Path, output_dir: Path, extra: list[str]) -> list[dict]:
    spec = load_spec(path)
    main(
        [
            "experiment",
            f"--config={path}",
            f"--output_dir={output_dir}",
            "--folds",
            str(spec.folds[0]),
            "--seeds",
            str(spec.seeds[0]),
            "--",
            *extra,
        ]
    )
    rows = read_results(output_dir / "results.csv")
    assert [(r["variant"], r["condition"]) for r in rows] == [
        (v, c.name) for v in spec.variants for c in spec.conditions
    ]
    assert (output_dir / "summary.md").is_file() and (output_dir / "ua_by_condition.png").is_file()
    if len(spec.conditions) > 1:  # each condition against the reference, per variant
        summary = (output_dir / "summary.md").read_text()
        assert f"UA change from the reference condition ({spec.reference_condition})" in summary
        changes = (output_dir / "condition_differences.csv").read_text().splitlines()
        assert len(changes) == 1 + len(spec.variants) * (len(spec.conditions) - 1)
    return rows


SYNTHETIC_FILES = {
    "synthetic_conv_vs_mts.yaml": ["mts", "mts_average_updates", "conv", "baseline"],
    "speaking_rate_synthetic.yaml": ["mts", "conv", "baseline"],
    "stability_synthetic.yaml": ["mts", "conv_twin", "mts_ema", "conv_twin_ema"],
    "twins_synthetic.yaml": [*TWINS, "mts_stats", "mts_softmax"],
    "verdict_synthetic.yaml": [
        "mts",
        "conv_twin",
        "mts_wide",
        "mts_quarter",
        "conv_twin_quarter",
        "bag_of_frames",
    ],
    "speaking_rate_candidates.yaml": [
        "mts",
        "mts_zero_padding",
        "mts_no_tempo",
        "conv_no_tempo",
        "conv",
        "mts_4_factors",
        "mts_first_stage",
        "mts_last_stages",
        "mts_average",
        "mts_average_updates",
    ],
}


def test_every_file_is_tested():
    cross_corpus = ["cross_corpus_acted.yaml", "cross_corpus_speech.yaml"]  # test_cross_corpus.py
    assert sorted(p.name for p in EXPERIMENTS.glob("*.yaml")) == sorted(
        [*SYNTHETIC_FILES, *CORPORA, *cross_corpus]
    )


@pytest.mark.parametrize("name", sorted(SYNTHETIC_FILES))
def test_synthetic_experiment(tmp_path, name):
    path = EXPERIMENTS / name
    spec = load_spec(path)
    assert list(spec.variants) == SYNTHETIC_FILES[name]
    if "candidates" in name or "twins" in name:  # a screening: one seed, 3 folds
        assert (len(spec.folds), len(spec.seeds)) == (3, 1)
    elif "stability" in name:  # one fold, the spread over seeds
        assert (len(spec.folds), len(spec.seeds)) == (1, 3)
    else:
        assert len(spec.folds) == 5 and len(spec.seeds) >= 3
    run_shipped(path, tmp_path / "out", [*TINY_SYNTHETIC, *TINY_TRAINER])


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_file_corpus_experiment(tmp_path, name):
    if "twins" in name:
        assert list(load_spec(EXPERIMENTS / name).variants) == TWINS
    make_folder, shrink = CORPORA[name]
    make_folder(tmp_path / "corpus")
    root = f"--data.root={tmp_path / 'corpus'}"
    run_shipped(EXPERIMENTS / name, tmp_path / "out", [root, *FILE_CORPUS, *shrink, *TINY_TRAINER])


#: Files whose results are published and were measured with the MTS network that
#: configs/ravdess/modern.yaml had before the wider scales: they pin it.
MEASURED_WITH_THE_PREVIOUS_NETWORK = [
    "cross_corpus_speech.yaml",
    "speaking_rate_speech.yaml",
    "stability_speech.yaml",
    "twins_speech.yaml",
    "verdict_speech.yaml",
]


@pytest.mark.parametrize("name", MEASURED_WITH_THE_PREVIOUS_NETWORK)
def test_published_results_keep_the_network_they_were_measured_with(monkeypatch, name):
    monkeypatch.setenv("MTS_SPEECH", "/corpora")  # the cross-corpus file's roots
    spec = load_spec(EXPERIMENTS / name)
    key = next(k for k in spec.plan() if k.variant == "mts")
    backbone = [a for a in spec.fit_args(key, []) if a.startswith("--model.backbone_kwargs=")]
    assert backbone[-1] == (
        "--model.backbone_kwargs={conv_type: mts, mts: {kernel_sharing: autograd, "
        "scale_factors: [0.7, 1.428]}}"
    )
    recipe = yaml.safe_load((EXPERIMENTS.parent / "ravdess" / "modern.yaml").read_text())
    assert recipe["model"]["backbone_kwargs"]["mts"]["scale_factors"] == [0.5, 0.7, 1.428, 2.0]
