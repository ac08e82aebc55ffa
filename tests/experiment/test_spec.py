"""Experiment files: parsing, errors, tempo sweeps as data, the run plan, and the refusal of
configs that choose checkpoints on test metrics."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from mts_lightning.commands import main
from mts_lightning.experiment import Condition, ExperimentError, RunKey, load_spec, tempo_conditions
from mts_lightning.experiment.launchers import run_command
from tests.helpers.tiny_runs import TINY_SYNTHETIC, TINY_TRAINER

REPO = Path(__file__).resolve().parents[2]


def write_spec(folder: Path, **settings) -> Path:
    (folder / "base.yaml").write_text("seed_everything: 0\n")
    spec = {
        "configs": ["base.yaml"],
        "variants": {"conv": ["--model.backbone_kwargs={conv_type: conv}"], "mts": []},
        "folds": [0, 1],
        "seeds": [0, 1, 2],
        "conditions": [{"name": "plain"}],
        **settings,
    }
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_spec_reads_every_setting(tmp_path):
    spec = load_spec(
        write_spec(
            tmp_path,
            overrides=["--trainer.max_epochs=3"],
            conditions=[
                {
                    "name": "fast",
                    "overrides": ["--data.corpus_options.test_stretch=[0.4, 0.5]"],
                    "x": 0.45,
                }
            ],
            tempo_sweep=[0.7, 1.0],
            slurm={"timeout_min": 5},
        )
    )
    assert spec.name == "exp" and spec.configs == ((tmp_path / "base.yaml").resolve(),)
    assert list(spec.variants) == ["conv", "mts"]
    assert [c.name for c in spec.conditions] == ["fast", "tempo_0.7", "tempo_1"]
    assert spec.reference_condition == "tempo_1" and spec.x_label == "test tempo"
    assert spec.slurm == {"timeout_min": 5}
    key = RunKey("conv", 1, 2)
    assert spec.fit_args(key, ["--trainer.limit_train_batches=2"]) == [
        "fit",
        f"--config={(tmp_path / 'base.yaml').resolve()}",
        "--trainer.max_epochs=3",
        "--model.backbone_kwargs={conv_type: conv}",
        "--data.fold=1",
        "--seed_everything=2",
        "--trainer.limit_train_batches=2",
    ]


def test_tempo_sweep_expands_to_test_tempo_conditions(tmp_path):
    assert tempo_conditions([0.5, 1.0, 2]) == [
        Condition("tempo_0.5", ("--data.test_tempo=0.5",), 0.5),
        Condition("tempo_1", ("--data.test_tempo=1",), 1.0),
        Condition("tempo_2", ("--data.test_tempo=2",), 2),
    ]
    for tempos, bad in (([0.0], "0.0"), ([0.7, 1000], "1000"), ([4.5], "4.5"), (["x"], "'x'")):
        with pytest.raises(
            ExperimentError,
            match=rf"^tempo_sweep\[\d\] must be a number from 0.25 to 4 .*, got {bad}$",
        ):
            tempo_conditions(tempos)
    # In a file, the error names the file too, before any run.
    path = write_spec(tmp_path, tempo_sweep=[0.7, 1000])
    with pytest.raises(ExperimentError) as info:
        load_spec(path)
    assert str(info.value).startswith(f"{path}: tempo_sweep[1] must be a number from 0.25 to 4")
    assert str(info.value).endswith("got 1000")


def test_plan_and_its_subsets(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    assert len(spec.plan()) == 2 * 2 * 3
    assert spec.plan(["mts"], [1], [2, 0]) == [RunKey("mts", 1, 0), RunKey("mts", 1, 2)]
    with pytest.raises(ExperimentError, match=r"--folds: 7 not in .*folds: 0, 1"):
        spec.plan(folds=[7])
    with pytest.raises(ExperimentError, match="--variants: tcn not in"):
        spec.plan(variants=["tcn"])


def test_dry_run_command_names_the_run(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    command = run_command(spec, RunKey("mts", 0, 1), tmp_path / "out", ["--trainer.max_epochs=1"])
    assert command == (
        f"mts-lightning experiment run --config={spec.path} --output_dir={tmp_path / 'out'} "
        "--variant=mts --fold=0 --seed=1 -- --trainer.max_epochs=1"
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"configs": ["missing.yaml"]}, "configs: 'missing.yaml' .* is not a file"),
        ({"variants": {}}, "'variants' is missing or empty"),
        ({"variants": {"a b": []}}, "'a b' is not a usable name"),
        ({"variants": {"conv": "--x=1"}}, "'variants.conv' is a list of strings"),
        ({"folds": [0, 0]}, "'folds' is a list of distinct integers >= 0"),
        ({"seeds": [-1]}, "'seeds' is a list of distinct integers >= 0"),
        ({"conditions": [], "tempo_sweep": []}, "no test condition"),
        ({"conditions": [{"name": "a"}, {"name": "a"}]}, "condition names repeat: a"),
        ({"conditions": [{"name": "a", "x": "fast"}]}, r"conditions\[0\].x is a number"),
        ({"conditions": [{"overrides": []}]}, r"conditions\[0\] is a mapping with a 'name'"),
        ({"reference_condition": "nope"}, "reference_condition 'nope' is not a condition"),
        ({"epochs": 3}, "unknown setting.*epochs"),
    ],
)
def test_bad_experiment_files_are_refused(tmp_path, settings, message):
    with pytest.raises(ExperimentError, match=message):
        load_spec(write_spec(tmp_path, **settings))


def test_experiment_command_errors_exit_2_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["mts-lightning"])
    with pytest.raises(SystemExit) as exit_info:
        main(["experiment", "--config", str(tmp_path / "none.yaml"), "--output_dir", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "experiment file" in err and "does not exist" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["experiment", "collect", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "no recorded run under" in capsys.readouterr().err


TINY = [*TINY_SYNTHETIC, *TINY_TRAINER]
TEST_CHECKPOINT = (
    "--trainer.callbacks+={class_path: lightning.pytorch.callbacks.ModelCheckpoint, "
    "init_args: {monitor: test/UA, mode: max}}"
)
TEST_STOPPING = (
    "--trainer.callbacks+={class_path: lightning.pytorch.callbacks.EarlyStopping, "
    "init_args: {monitor: test/loss}}"
)


@pytest.mark.parametrize(
    ("override", "owner"),
    [
        (TEST_CHECKPOINT, "ModelCheckpoint monitors 'test/UA'"),
        (TEST_STOPPING, "EarlyStopping monitors 'test/loss'"),
        (
            "--model.lr_scheduler={class_path: torch.optim.lr_scheduler.ReduceLROnPlateau}",
            "the model's lr_scheduler_monitor monitors 'test/loss'",
        ),
    ],
)
def test_fit_refuses_test_monitors(tmp_path, capsys, monkeypatch, override, owner):
    monkeypatch.setattr(sys, "argv", ["mts-lightning"])
    args = ["fit", f"--config={REPO / 'configs' / 'synthetic_conv.yaml'}", *TINY, override]
    if "ReduceLROnPlateau" in override:
        args.append("--model.lr_scheduler_monitor=test/loss")
    args.append(f"--trainer.logger.init_args.save_dir={tmp_path}")
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert owner in err and "validation data only" in err
    assert not list(tmp_path.rglob("*.ckpt"))


def test_experiment_refuses_a_test_monitor_before_any_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["mts-lightning"])
    spec = tmp_path / "exp.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "configs": [str(REPO / "configs" / "synthetic_conv.yaml")],
                "variants": {"ok": [], "leaky": [TEST_CHECKPOINT]},
                "folds": [0],
                "seeds": [0],
                "conditions": [{"name": "plain"}],
            }
        )
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["experiment", f"--config={spec}", f"--output_dir={tmp_path / 'out'}", "--", *TINY])
    assert exit_info.value.code == 2
    assert "ModelCheckpoint monitors 'test/UA'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before the first run started


def test_folds_of_a_random_split_are_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["mts-lightning"])
    spec = tmp_path / "exp.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "configs": [str(REPO / "configs" / "synthetic_conv.yaml")],
                "overrides": ["--data.split=random"],
                "variants": {"conv": []},
                "folds": [0, 1],
                "seeds": [0],
                "conditions": [{"name": "plain"}],
            }
        )
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["experiment", f"--config={spec}", f"--output_dir={tmp_path / 'out'}", "--", *TINY])
    assert exit_info.value.code == 2
    assert "uses data.split 'random', which has no folds" in capsys.readouterr().err


def _checked_spec(folder: Path, **settings) -> Path:
    """A tiny two-variant, two-condition experiment whose settings are all in the file."""
    spec = {
        "configs": [str(REPO / "configs" / "synthetic.yaml")],
        "overrides": [*TINY, "--trainer.max_time=null"],
        "variants": {"mts": [], "conv": ["--model.backbone_kwargs={conv_type: conv}"]},
        "folds": [0, 1],
        "seeds": [0],
        "conditions": [
            {"name": "seen", "overrides": ["--data.corpus_options.test_stretch=[0.6, 1.6]"]},
            {"name": "fast", "overrides": ["--data.corpus_options.test_stretch=[0.35, 0.45]"]},
        ],
        **settings,
    }
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


FAST_TYPO = "--data.corpus_options.test_strech=[0.35, 0.45]"
FAST_TYPO_ERROR = (
    "ValueError: corpus_options of 'synthetic' takes no argument 'test_strech' (did you mean "
    "'test_stretch'?); it takes seed, num_classes, num_speakers, clips_per_speaker, duration, "
    "snr_db, train_stretch, test_stretch"
)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("settings", "extra", "entry_and_error"),
    [
        # The reported input (issue 18, F): a mistyped test-condition override.
        (
            {"conditions": [{"name": "seen"}, {"name": "fast", "overrides": [FAST_TYPO]}]},
            [],
            f"conditions[1] (fast): {FAST_TYPO_ERROR}",
        ),
        (
            {"conditions": [{"name": "slow", "overrides": ["--data.test_tempo=slow"]}]},
            [],
            'conditions[0] (slow): Parser key "data.test_tempo": ',
        ),
        (
            {"conditions": [{"name": "c", "overrides": ["--model.backbone_kwargs={dropout: x}"]}]},
            [],
            "conditions[0] (c): ValueError: backbone_kwargs: dropout must be float for "
            "compact_cnn, got 'x'",
        ),
        (
            {"overrides": [*TINY, "--trainer.max_epoks=1"]},
            [],
            "overrides: unrecognized arguments: --trainer.max_epoks=1",
        ),
        (
            {"variants": {"mts": [], "conv": ["--model.backbone_kwargs={conv_typ: conv}"]}},
            [],
            "variants.conv: ValueError: backbone_kwargs: compact_cnn takes no argument "
            "'conv_typ' (did you mean 'conv_type'?); it takes num_classes, input_shape,",
        ),
        (
            {"variants": {"mts": ["--model.backbone_kwargs={mts: {kernel_sharng: average}}"]}},
            [],
            "variants.mts: ValueError: backbone_kwargs: mts: unknown option(s) kernel_sharng;",
        ),
        ({"folds": [0, 9]}, [], "folds: ValueError: fold must be in [0, 3]"),
        (
            {},
            ["--data.n_mles=32"],
            "the arguments after '--': unrecognized arguments: --data.n_mles",
        ),
    ],
)
def test_every_override_is_checked_before_the_first_run(
    tmp_path, capsys, monkeypatch, settings, extra, entry_and_error
):
    monkeypatch.setattr(sys, "argv", ["mts-lightning"])
    spec = _checked_spec(tmp_path, **settings)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["experiment", f"--config={spec}", f"--output_dir={out}", "--", *extra])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"mts-lightning experiment: error: {spec}: {entry_and_error}"), err
    assert not out.exists()  # refused before the first run started


def test_a_base_config_typo_names_the_configs(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["mts-lightning"])
    typo = tmp_path / "typo.yaml"
    typo.write_text("data:\n  batch_sze: 4\n")
    spec = _checked_spec(tmp_path, configs=[str(REPO / "configs" / "synthetic.yaml"), "typo.yaml"])
    with pytest.raises(SystemExit) as exit_info:
        main(["experiment", f"--config={spec}", f"--output_dir={tmp_path / 'out'}"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        f"mts-lightning experiment: error: {spec}: configs: Subcommand 'fit' does not accept "
        "option 'data.batch_sze'\n"
    )


@pytest.mark.slow
def test_one_run_checks_its_test_conditions_before_its_fit(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["mts-lightning"])
    conditions = [{"name": "fast", "overrides": [FAST_TYPO]}]
    spec = _checked_spec(tmp_path, conditions=conditions)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(
            ["experiment", "run", f"--config={spec}", f"--output_dir={out}"]
            + ["--variant=mts", "--fold=0", "--seed=0"]
        )
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        f"mts-lightning experiment: error: {spec}: conditions[0] (fast): {FAST_TYPO_ERROR}\n"
    )
    assert not out.exists()
