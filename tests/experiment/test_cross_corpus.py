"""Label sets, testing a checkpoint on another corpus, and the train x test matrix."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml

from mts_lightning.cli import cli_main
from mts_lightning.commands import main
from mts_lightning.data import DataError, SpectrogramDataModule, get_corpus
from mts_lightning.data.datamodule import balanced
from mts_lightning.data.label_sets import (
    LabelSet,
    apply_label_set,
    get_label_set,
    list_label_sets,
)
from mts_lightning.experiment import ExperimentError, load_spec
from mts_lightning.experiment.runner import read_results
from mts_lightning.export import export_metadata
from mts_lightning.inference import EmotionRecognizer
from tests.helpers.data_fixtures import (
    make_crema_d_folder,
    make_emodb_folder,
    make_iemocap_folder,
    make_manifest,
    make_ravdess_folder,
    make_savee_folder,
    make_tess_folder,
)
from tests.helpers.tiny_runs import TINY_SYNTHETIC, TINY_TRAINER
from tests.helpers.wandb_records import read_wandb_records

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SHARED4 = ["neutral", "happy", "sad", "angry"]
ACTED6 = [*SHARED4, "fearful", "disgust"]


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch, one_thread):
    monkeypatch.setattr(sys, "argv", ["mts-lightning"])


def manifest_folder(root: Path) -> list[Path]:
    files = make_ravdess_folder(root / "clips", actors=(1, 2, 3), emotions=(1, 2, 3, 5))
    names = {"01": "neutral", "02": "calm", "03": "joy", "05": "anger"}
    rows = [
        {"path": str(f), "label": names[f.stem.split("-")[2]], "speaker": f.parent.name}
        for f in files
    ]
    return [make_manifest(root, rows)]


#: Each corpus, a writer of its fixture, and its clips per shared4 class (in SHARED4 order)
#: and those left out, in the fixture as written.
CORPORA = {
    "ravdess": (
        make_ravdess_folder,
        [6, 6, 6, 6],
        {"calm": 6, "fear": 6, "disgust": 6, "surprise": 6},
    ),
    "crema_d": (make_crema_d_folder, [3, 3, 3, 3], {"fear": 3, "disgust": 3}),
    "emodb": (make_emodb_folder, [3, 3, 3, 3], {"boredom": 3, "fear": 3, "disgust": 3}),
    "tess": (make_tess_folder, [4, 4, 4, 4], {"fear": 4, "disgust": 4, "pleasant_surprise": 4}),
    "savee": (make_savee_folder, [4, 4, 4, 4], {"fear": 4, "disgust": 4, "surprise": 4}),
    "iemocap": (make_iemocap_folder, [10, 10, 10, 10], {"excited": 10}),
    "manifest": (manifest_folder, [3, 3, 0, 3], {"calm": 3}),
}


def scan(corpus: str, root: Path, label_set: str) -> tuple:
    make_folder = CORPORA[corpus][0]
    written = make_folder(root)
    spec = get_corpus(corpus)
    path = written[0] if corpus == "manifest" else root
    source = spec.scan(path, **spec.label_set_scan)
    return source, *apply_label_set(source, get_label_set(label_set), str(root))


@pytest.mark.parametrize("corpus", sorted(CORPORA))
def test_shared4_maps_every_corpus(tmp_path, corpus):
    _, expected, left_out = CORPORA[corpus]
    source, relabelled, report = scan(corpus, tmp_path, "shared4")
    assert relabelled.class_names == SHARED4
    counts = Counter(relabelled.class_names[c.label] for c in relabelled.clips)
    assert [counts[c] for c in SHARED4] == expected
    # every clip outside the set is listed, with its class, and counted
    assert report.left_out == dict(sorted(left_out.items()))
    outside = [e for e in relabelled.excluded if "outside label set shared4" in e.reason]
    assert len(outside) == sum(left_out.values())
    assert len(relabelled.clips) + len(outside) == len(source.clips)
    # a clip keeps its audio, speaker and cache identity
    clip = relabelled.clips[0]
    original = next(c for c in source.clips if c.path == clip.path)
    assert clip.speaker == original.speaker
    assert relabelled.identity(clip) == source.identity(original)
    assert torch.equal(
        relabelled.load_waveform(clip, 8000, 64), source.load_waveform(original, 8000, 64)
    )


@pytest.mark.parametrize("corpus", ["ravdess", "crema_d", "emodb", "tess", "savee"])
def test_acted6_covers_the_acted_corpora(tmp_path, corpus):
    _, relabelled, report = scan(corpus, tmp_path, "acted6")
    assert relabelled.class_names == ACTED6
    assert set(report.kept) == set(ACTED6)  # all six in every acted corpus
    assert report.mapping["fear"] == "fearful"


def test_iemocap_excited_joins_happy_only_when_asked(tmp_path):
    _, plain, _ = scan("iemocap", tmp_path / "a", "shared4")
    _, merged, report = scan("iemocap", tmp_path / "b", "shared4_excited")
    happy = SHARED4.index("happy")
    assert sum(c.label == happy for c in plain.clips) == 10
    assert sum(c.label == happy for c in merged.clips) == 20 and report.left_out == {}


def test_synthetic_patterns_stand_in_for_the_shared_classes():
    data = SpectrogramDataModule(
        corpus_options={"num_speakers": 3, "clips_per_speaker": 6}, label_set="shared4"
    )
    corpus = data.load_corpus()
    assert data.class_names == SHARED4 and data.num_classes == 4
    assert len(corpus.clips) == 12 and data.label_set_report.left_out == {
        "pattern_4": 3,
        "pattern_5": 3,
    }
    assert data.label_set_info["mapping"] == {f"pattern_{i}": c for i, c in enumerate(SHARED4)}


def test_inline_label_set(tmp_path):
    make_ravdess_folder(tmp_path, actors=(1, 2, 3), emotions=(1, 2, 3, 4))
    inline = {"calm_or_neutral": ["neutral", "calm"], "other": ["happy", "sad"]}
    data = SpectrogramDataModule(corpus="ravdess", root=str(tmp_path), label_set=inline)
    assert data.class_names == ["calm_or_neutral", "other"]
    labels = Counter(c.label for c in data.load_corpus().clips)
    assert labels == {0: 6, 1: 6}
    assert data.label_set_info["name"] == "inline"


def test_label_set_errors(tmp_path):
    with pytest.raises(ValueError, match=r"unknown label set 'shared5'; known: acted6, shared4"):
        get_label_set("shared5")
    assert list_label_sets() == ["acted6", "shared4", "shared4_excited"]
    with pytest.raises(
        ValueError, match="class 'calm' is sent to two shared classes, 'neutral' and 'sad'"
    ):
        get_label_set({"neutral": ["neutral", "calm"], "sad": ["sad", "calm"]})
    with pytest.raises(ValueError, match="at least 2 shared classes"):
        LabelSet("one", {"neutral": ("neutral",)})
    with pytest.raises(ValueError, match="needs a list of corpus class names"):
        get_label_set({"neutral": "neutral", "sad": ["sad"]})
    # a corpus folder with no clip of a shared class
    make_emodb_folder(tmp_path, letters="LE")
    data = SpectrogramDataModule(corpus="emodb", root=str(tmp_path), label_set="shared4")
    with pytest.raises(DataError) as err:
        data.load_corpus()
    message = str(err.value)
    assert "\n" not in message and "no clip of a class in label set shared4" in message
    assert "its classes are boredom, disgust" in message and "neutral, happy, sad, angry" in message


def test_balanced_test_part_is_seeded_and_equal_per_class(tmp_path):
    make_ravdess_folder(tmp_path, actors=range(1, 7), emotions=(1, 3, 4, 5))
    clips = SpectrogramDataModule(corpus="ravdess", root=str(tmp_path)).load_corpus().clips
    indices = [i for i, c in enumerate(clips) if c.label != 0 or c.speaker != "Actor_01"]
    chosen = balanced(clips, indices, seed=3)
    assert Counter(clips[i].label for i in chosen) == {0: 5, 2: 5, 3: 5, 4: 5}
    assert chosen == balanced(clips, indices, seed=3) != balanced(clips, indices, seed=4)
    assert set(chosen) <= set(indices)


# ---------------------------------------------------------------------- the command line
def fit(tmp_path: Path, *extra: str) -> tuple[Path, Path]:
    """A tiny synthetic fit; its saved config and best checkpoint."""
    save_dir = tmp_path / "logs"
    run = cli_main(
        [
            "fit",
            f"--config={CONFIGS / 'synthetic.yaml'}",
            *TINY_SYNTHETIC,
            *TINY_TRAINER,
            f"--trainer.logger.init_args.save_dir={save_dir}",
            *extra,
        ]
    )
    best = Path(run.trainer.checkpoint_callback.best_model_path)
    return best.parent.parent / "config.yaml", best


def evaluate(config: Path, best: Path, *args: str, command: str = "test"):
    return cli_main(
        [
            command,
            f"--config={config}",
            f"--ckpt_path={best}",
            "--trainer.logger=false",
            f"--trainer.default_root_dir={config.parent / 'tests'}",
            "--trainer.enable_progress_bar=false",
            *args,
        ]
    )


def refused(capsys, call, command: str, *words: str) -> None:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        call()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mts-lightning {command}: error:") and len(err.splitlines()) == 1, err
    for word in words:
        assert word in err, (word, err)


@pytest.mark.slow
def test_checkpoint_tested_on_another_corpus(tmp_path, capsys, caplog):
    config, best = fit(tmp_path, "--data.label_set=shared4")
    out = capsys.readouterr().out
    run = config.parent
    assert "label set shared4: 16 clips of synthetic kept" in out  # the fit summary
    assert "left out 8 clips of classes outside it (pattern_4 4, pattern_5 4)" in out
    written = json.loads((run / "label_set.json").read_text())
    assert written["left_out"] == {"pattern_4": 4, "pattern_5": 4}
    saved = torch.load(best, weights_only=True, map_location="cpu")
    info = saved["hyper_parameters"]["label_set_info"]
    assert info["name"] == "shared4" and info["classes"] == SHARED4
    assert info["corpus"] == "synthetic" and info["mapping"]["pattern_3"] == "angry"
    assert saved["hyper_parameters"]["class_names"] == SHARED4

    root = tmp_path / "EmoDB"
    make_emodb_folder(root, speakers=("03", "08", "09", "10"))
    other = ["--data.corpus=emodb", f"--data.root={root}"]
    with caplog.at_level("INFO"):
        trained_norm = evaluate(config, best, *other)
    data = trained_norm.datamodule
    # the whole corpus is the test split; the features are the checkpoint's
    assert data.hparams.split == "all" and len(data.test_dataset) == 16
    assert data.split_speakers["test"] == ["03", "08", "09", "10"]
    assert data.feature_config.sample_rate == 16000 and data.frames == 1 + 16000 // 512
    assert torch.equal(
        data.model_input.mean, torch.as_tensor(saved["SpectrogramDataModule"]["norm_mean"])
    )
    assert "the statistics of the training split of synthetic, from the checkpoint" in caplog.text
    assert {"test/UA", "test/WA"} <= set(trained_norm.trainer.callback_metrics)

    own = evaluate(config, best, *other, "--data.normalise_with=test")
    assert not torch.equal(own.datamodule.model_input.mean, data.model_input.mean)
    assert "the statistics of emodb test itself (16 clips" in caplog.text
    val = evaluate(config, best, *other, command="validate")
    assert len(val.datamodule.val_dataset) == 16 and "val/UA" in val.trainer.callback_metrics

    clips = sorted(str(p) for p in root.rglob("*.wav"))[:3]
    predictions = tmp_path / "predictions.csv"
    evaluate(
        config,
        best,
        f"--data.predict_paths=[{', '.join(clips)}]",
        f"--prediction_writer.output_path={predictions}",
        command="predict",
    )
    header = predictions.read_text().splitlines()[0]
    assert header == "file,predicted_emotion," + ",".join(f"prob_{c}" for c in SHARED4)

    recognizer = EmotionRecognizer.from_checkpoint(best)
    assert recognizer.label_set["name"] == "shared4"
    assert export_metadata(recognizer, "features")["label_set"]["classes"] == SHARED4


@pytest.mark.slow
def test_other_corpus_without_a_label_set_is_refused(tmp_path, capsys):
    config, best = fit(tmp_path)
    root = tmp_path / "EmoDB"
    make_emodb_folder(root)
    refused(
        capsys,
        lambda: evaluate(config, best, "--data.corpus=emodb", f"--data.root={root}"),
        "test",
        "trained on synthetic without a label set",
        "pattern_0, pattern_1",
        "emodb has the classes angry, boredom",
        "--data.label_set (one of acted6, shared4, shared4_excited",
    )


@pytest.mark.slow
def test_other_corpus_without_a_shared_class_is_refused(tmp_path, capsys):
    config, best = fit(tmp_path, "--data.label_set=shared4")
    root = tmp_path / "EmoDB"
    make_emodb_folder(root, letters="LEA")
    refused(
        capsys,
        lambda: evaluate(config, best, "--data.corpus=emodb", f"--data.root={root}"),
        "test",
        "no clip of a class in label set shared4",
        "boredom, disgust, fear",
        "neutral, happy, sad, angry",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data.label_set=shared5"], "unknown label set 'shared5'; known: acted6, shared4"),
        (
            ["--data.label_set={neutral: [neutral, pattern_0], sad: [pattern_0]}"],
            "class 'pattern_0' is sent to two shared classes",
        ),
        (["--data.split=all"], "split='all' makes every clip of synthetic a test clip"),
        (["--data.normalise_with=test"], "fit normalises with the training split"),
    ],
)
def test_fit_errors(tmp_path, capsys, args, message):
    refused(capsys, lambda: fit(tmp_path, *args), "fit", message)


# ---------------------------------------------------------------------- the matrix
ACTED = {
    "RAVDESS": lambda root: make_ravdess_folder(root, seconds=0.5),
    "CREMA-D": lambda root: make_crema_d_folder(root, seconds=0.5),
    "EmoDB": lambda root: make_emodb_folder(root, seconds=0.5),
    "TESS": lambda root: make_tess_folder(root, words=("back", "bar", "base", "bath"), seconds=0.5),
    "SAVEE": lambda root: make_savee_folder(root, seconds=0.5),
}
SHRINK = [
    "--data.duration=0.5",
    "--data.num_workers=0",
    "--data.batch_size=8",
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=1",
]


@pytest.mark.slow
@pytest.mark.e2e
def test_shipped_cross_corpus_experiment(tmp_path, monkeypatch, capsys):
    """configs/experiments/cross_corpus_acted.yaml on the fixture corpora, one fold and seed."""
    for folder, make in ACTED.items():
        make(tmp_path / "corpora" / folder)
    monkeypatch.setenv("MTS_CORPORA", str(tmp_path / "corpora"))
    path = CONFIGS / "experiments" / "cross_corpus_acted.yaml"
    spec = load_spec(path)
    corpora = ["ravdess", "crema_d", "emodb", "tess", "savee"]
    assert list(spec.variants) == ["mts", "conv"]
    assert spec.cross_corpus.train == spec.cross_corpus.test == tuple(corpora)
    assert spec.cross_corpus.label_set == "shared4" and spec.cross_corpus.balance_test
    out = tmp_path / "out"
    main(
        [
            "experiment",
            f"--config={path}",
            f"--output_dir={out}",
            "--folds",
            "0",
            "--seeds",
            "0",
            "--",
            *SHRINK,
        ]
    )
    rows = read_results(out / "results.csv")
    header = (out / "results.csv").read_text().splitlines()[0]
    assert header.startswith("variant,fold,seed,train_corpus,test_corpus,condition,WA,UA")
    cells = [(r["train_corpus"], r["variant"], r["test_corpus"]) for r in rows]
    assert cells == [(t, v, s) for t in corpora for v in spec.variants for s in corpora]
    for row in rows:  # balanced test corpora: WA equals UA
        assert row["WA"] == pytest.approx(row["UA"], abs=1e-6), row
    # the diagonal is the run's own test split, the rest the whole (balanced) corpus
    run = out / "runs" / "mts" / "ravdess_fold0_seed0"
    assert (run / "test" / "emodb" / "as_recorded").is_dir()
    summary = (out / "summary.md").read_text()
    assert "## mts" in summary and "## conv" in summary
    assert "| train \\ test | ravdess | crema_d | emodb | tess | savee |" in summary
    assert "label set shared4; test corpora balanced per class" in summary
    emodb_from_ravdess = next(
        r
        for r in rows
        if (r["variant"], r["train_corpus"], r["test_corpus"]) == ("mts", "ravdess", "emodb")
    )
    assert f"{emodb_from_ravdess['UA']:.3f} (n=1)" in summary
    paired = (out / "paired_differences.csv").read_text().splitlines()
    assert paired[0].startswith("condition,train_corpus,test_corpus,metric,a,b,pairs")
    assert len(paired) == 1 + 25  # one conv - mts test per cell
    assert (out / "cross_corpus_ua.png").stat().st_size > 0
    # collect rebuilds the same outputs from the run folders
    before = summary
    main(["experiment", "collect", str(out)])
    assert (out / "summary.md").read_text() == before


@pytest.mark.slow
@pytest.mark.e2e
def test_shipped_speech_cross_corpus_experiment(tmp_path, monkeypatch, capsys):
    """configs/experiments/cross_corpus_speech.yaml on fixture folders in the three namings
    (where benchmarks/make_speech_corpus.py --naming writes them), one seed."""
    corpora = tmp_path / "corpora"
    make_ravdess_folder(corpora / "xc_ravdess", actors=(1, 2, 3, 4), seconds=0.5)
    make_crema_d_folder(corpora / "xc_crema_d", actors=(1001, 1002, 1003, 1004), seconds=0.5)
    make_emodb_folder(corpora / "xc_emodb", speakers=("03", "04", "05", "06"), seconds=0.5)
    monkeypatch.setenv("MTS_SPEECH", str(corpora))
    path = CONFIGS / "experiments" / "cross_corpus_speech.yaml"
    spec = load_spec(path)
    names = ["ravdess", "crema_d", "emodb"]
    assert list(spec.variants) == ["mts", "conv"]
    assert spec.cross_corpus.train == spec.cross_corpus.test == tuple(names)
    assert spec.cross_corpus.label_set == "shared4" and spec.cross_corpus.balance_test
    out = tmp_path / "out"
    main(["experiment", f"--config={path}", f"--output_dir={out}", "--seeds", "0", "--", *SHRINK])
    rows = read_results(out / "results.csv")
    cells = [(r["train_corpus"], r["variant"], r["test_corpus"]) for r in rows]
    assert cells == [(t, v, s) for t in names for v in spec.variants for s in names]
    assert all(r["fold"] == 0 and r["seed"] == 0 for r in rows)
    summary = (out / "summary.md").read_text()
    assert "| train \\ test | ravdess | crema_d | emodb |" in summary
    assert (out / "cross_corpus_ua.png").stat().st_size > 0


def test_cross_corpus_spec_errors(tmp_path, monkeypatch, capsys):
    base = {
        "configs": [str(CONFIGS / "synthetic.yaml")],
        "variants": {"mts": []},
        "folds": [0],
        "seeds": [0],
        "conditions": [{"name": "test"}],
    }

    def load(cross):
        path = tmp_path / "e.yaml"
        path.write_text(yaml.safe_dump({**base, "cross_corpus": cross}))
        return load_spec(path)

    with pytest.raises(ExperimentError, match="'opera' is not a registered corpus"):
        load({"corpora": {"opera": {"root": "x"}}})
    with pytest.raises(ExperimentError, match=r"cross_corpus.test is a list of distinct corpora"):
        load({"corpora": {"emodb": {"root": "x"}}, "test": ["tess"]})
    with pytest.raises(ExperimentError, match="unknown label set 'shared5'; known: acted6"):
        load({"corpora": {"emodb": {"root": "x"}}, "label_set": "shared5"})
    monkeypatch.delenv("NO_SUCH_FOLDER_VARIABLE", raising=False)
    spec = load(
        {"corpora": {"emodb": {"root": "${NO_SUCH_FOLDER_VARIABLE}/EmoDB"}, "synthetic": {}}}
    )
    key = spec.plan()[0]
    assert key.corpus == "emodb" and key.folder_name == "emodb_fold0_seed0"
    with pytest.raises(ExperimentError, match="NO_SUCH_FOLDER_VARIABLE, which are not set"):
        spec.fit_args(key)
    synthetic = spec.fit_args(spec.plan(corpora=["synthetic"])[0])
    assert "--data.corpus=synthetic" in synthetic
    assert not any(a.startswith(("--data.root", "--data.label_set")) for a in synthetic)
    main(["experiment", f"--config={tmp_path / 'e.yaml'}", f"--output_dir={tmp_path}", "--dry-run"])
    commands = capsys.readouterr().out.splitlines()
    assert commands[0].endswith("--variant=mts --fold=0 --seed=0 --train_corpus=emodb")
    assert commands[1].endswith("--train_corpus=synthetic")
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump(base))
    with pytest.raises(ExperimentError, match="is not a cross-corpus experiment"):
        load_spec(plain).plan(corpora=["emodb"])


@pytest.mark.slow
@pytest.mark.e2e
def test_cross_corpus_experiment_logs_its_matrix_to_wandb(tmp_path, capsys):
    """Trained on the synthetic corpus, tested on it and on an EmoDB folder, with each test
    corpus's own statistics; W&B among the loggers: the matrix goes to a W&B table."""
    make_emodb_folder(tmp_path / "EmoDB", speakers=("03", "08", "09", "10"))
    spec = tmp_path / "matrix.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "configs": [
                    str(CONFIGS / "synthetic_conv.yaml"),
                    str(CONFIGS / "loggers" / "wandb.yaml"),
                ],
                "variants": {"conv": []},
                "folds": [0],
                "seeds": [0],
                "conditions": [{"name": "test"}],
                "cross_corpus": {
                    "label_set": {"neutral": ["neutral", "pattern_0"], "sad": ["sad", "pattern_1"]},
                    "corpora": {"synthetic": {}, "emodb": {"root": "EmoDB"}},
                    "train": ["synthetic"],
                    "normalise_with": "test",
                },
            },
            sort_keys=False,
        )
    )
    out = tmp_path / "out"
    main(
        [
            "experiment",
            f"--config={spec}",
            f"--output_dir={out}",
            "--",
            *TINY_SYNTHETIC,
            *TINY_TRAINER,
        ]
    )
    assert "W&B summary run:" in capsys.readouterr().out
    rows = read_results(out / "results.csv")
    assert [(r["train_corpus"], r["test_corpus"]) for r in rows] == [
        ("synthetic", "synthetic"),
        ("synthetic", "emodb"),
    ]
    summary = (out / "summary.md").read_text()
    assert (
        "label set inline; test corpora as they are; normalisation with the test corpus's own"
        in summary
    )
    (run_file,) = (out / "wandb").glob("offline-run-*/run-*.wandb")
    logged = {
        "/".join(item.nested_key) or item.key
        for r in read_wandb_records(run_file)
        if r.WhichOneof("record_type") == "history"
        for item in r.history.item
    }
    assert {"experiment/cross_corpus/_type", "experiment/cross_corpus_ua/_type"} <= logged


@pytest.mark.slow
def test_label_set_other_than_the_checkpoints_is_refused(tmp_path, capsys):
    config, best = fit(tmp_path, "--data.label_set=shared4")
    refused(
        capsys,
        lambda: evaluate(config, best, "--data.label_set=acted6"),
        "test",
        "data.label_set: the checkpoint's model was trained with 'shared4', given 'acted6'",
    )


def test_missing_test_corpus_folder_is_refused_before_any_run(tmp_path, capsys):
    spec = tmp_path / "matrix.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "configs": [str(CONFIGS / "synthetic_conv.yaml")],
                "variants": {"conv": []},
                "folds": [0],
                "seeds": [0],
                "conditions": [{"name": "test"}],
                "cross_corpus": {
                    "label_set": "shared4",
                    "corpora": {"synthetic": {}, "emodb": {"root": "missing/EmoDB"}},
                    "train": ["synthetic"],
                },
            }
        )
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["experiment", f"--config={spec}", f"--output_dir={tmp_path / 'out'}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cross_corpus.corpora.emodb.root" in err
    assert f"'{tmp_path / 'missing' / 'EmoDB'}' does not exist" in err
    assert not (tmp_path / "out" / "runs").exists()


@pytest.mark.parametrize(
    ("corpus", "label_set", "counts"),
    [("iemocap", "shared4_excited", [10, 20, 10, 10]), ("manifest", "shared4", [3, 3, 0, 3])],
)
def test_training_parts_with_a_label_set(tmp_path, corpus, label_set, counts):
    """IEMOCAP and a manifest train on a label set: the loaders serve the shared labels."""
    written = CORPORA[corpus][0](tmp_path)
    root = written[0] if corpus == "manifest" else tmp_path
    data = SpectrogramDataModule(
        corpus=corpus, root=str(root), label_set=label_set, num_folds=3, duration=0.3
    )
    data.setup("fit")
    clips = data.load_corpus().clips
    assert [sum(c.label == i for c in clips) for i in range(4)] == counts
    labels = {int(y) for _, batch in data.train_dataloader() for y in batch}
    assert labels <= {i for i, n in enumerate(counts) if n} and len(labels) > 1
    assert data.class_weights.shape == (4,)
