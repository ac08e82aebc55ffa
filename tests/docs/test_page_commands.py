"""Every command and code example shown in the README and the documentation pages runs.

Each shell command of a page is claimed by exactly one rule below: run here as written
(sizes shrunk where training would take minutes, the settings under test kept), run by a
named test elsewhere, or exempt for a stated reason. A command that no rule claims fails
``test_every_command_has_a_rule``, so a new command in the docs needs a way to be run.
Commands run from a folder outside the checkout with the configs copied out by
``mts-lightning init-config``, as a user of the installed package would.
"""

from __future__ import annotations

import glob
import re
import shlex
import sys
from collections import OrderedDict
from pathlib import Path

import lightning.pytorch as pl
import pytest
import soundfile as sf
import yaml
from torch import nn

from mts_lightning.cli import MTSLightningCLI
from mts_lightning.commands import main
from mts_lightning.data.corpora import SyntheticConfig, SyntheticCorpus
from mts_lightning.experiment import load_spec
from tests.helpers import doc_pages
from tests.helpers.data_fixtures import make_emodb_folder, make_ravdess_folder
from tests.helpers.tiny_runs import TINY_SYNTHETIC, TINY_TRAINER

pytestmark = pytest.mark.e2e

REPO = doc_pages.REPO


# Commands run by another test, as written there; the test must exist.
ELSEWHERE = {
    r"^mts-lightning (predict --timeline|export) ": (
        "inference/test_recognizer.py",
        "test_readme_inference_examples_run_as_written",
    ),
    r"^mts-lightning fit --config RUN/config\.yaml --ckpt_path RUN/checkpoints/last\.ckpt$": (
        "cli/test_cli.py",
        "test_killed_fit_resumes_to_the_uninterrupted_result",
    ),
    r"--data\.augment\.tempos": (
        "cli/test_cli.py",
        "test_readme_rate_robustness_command_runs_as_written",
    ),
    r"--model\.backbone_kwargs": (
        "cli/test_cli.py",
        "test_readme_backbone_overrides_build_the_model",
    ),
    r"^mts-lightning experiment collect ": (
        "experiment/test_runs.py",
        "test_collect_of_runs_from_separate_commands_equals_the_in_process_result",
    ),
    r"^mts-lightning test --config RUN/config\.yaml --ckpt_path \S+\s+--data\.corpus ": (
        "experiment/test_cross_corpus.py",
        "test_checkpoint_tested_on_another_corpus",
    ),
    r"^MTS_CORPORA=\S+ mts-lightning experiment --config \S+/cross_corpus_acted\.yaml ": (
        "experiment/test_cross_corpus.py",
        "test_shipped_cross_corpus_experiment",
    ),
    r"^MTS_SPEECH=\S+ mts-lightning experiment\s+--config \S+/cross_corpus_speech\.yaml ": (
        "experiment/test_cross_corpus.py",
        "test_shipped_speech_cross_corpus_experiment",
    ),
    r"^python benchmarks/stability\.py ": (
        "benchmarks/test_stability.py",
        "test_runs_as_a_user_runs_it",
    ),
    r"^python benchmarks/rate_shift\.py ": ("benchmarks/test_rate_shift.py", "def test_"),
    r"^(\.venv/bin/)?python benchmarks/twins\.py\b": (
        "benchmarks/test_twins_and_probe.py",
        "test_twins_prints_equal_cost_and_step_ratios",
    ),
    r"^(\.venv/bin/)?python benchmarks/linear_probe\.py ": (
        "benchmarks/test_twins_and_probe.py",
        "test_linear_probe_writes_a_test_ua_per_fold_and_tempo",
    ),
    r"^python benchmarks/make_speech_corpus\.py ": (
        "benchmarks/test_speech_corpus.py",
        "def test_",
    ),
    r"^pip install (\.|dist/)": ("docs/test_wheel.py", "test_built_wheel_installs_and_runs"),
    r"^make dist\b": ("docs/test_wheel.py", "test_built_wheel_installs_and_runs"),
    r"^make docs\b": ("docs/test_site.py", "test_docs_site_builds_and_documents_every_public_name"),
}
# Commands no test runs, and why.
EXEMPT = {
    r"^make test\b": "the test suite itself",
    r"^make train\b": "its recipe is the synthetic.yaml fit run here (checked against the Makefile)",
    r"^pip install -e ": "the development install every test runs in",
    r"^\.venv/bin/python benchmarks/(layer|inference)\.py": "benchmarks run for minutes",
    r"^\.venv/bin/python benchmarks/make_speech_corpus\.py ": "see the speech corpus command",
    r"^(RUN=\S+|for .*; do|done)$": "shell syntax around the commands",
}
RUN_HERE = {
    r"^mts-lightning init-config": "init_config",
    r"^mts-lightning experiment --config ": "experiment",
    r"^mts-lightning (test|predict) --config \$RUN/": "from_run",
    r"^mts-lightning fit --config configs/\S+\.yaml --print_config": "print_config",
    r"^mts-lightning fit --config configs/": "fit",
}


def all_commands() -> list[tuple[str, str]]:
    """``(page, command)`` for every shell command of every page."""
    found = []
    for page in doc_pages.pages():
        for language, code in doc_pages.code_blocks(page):
            if language == "bash":
                for command in doc_pages.shell_commands(code):
                    command = command.split("  #")[0].strip()  # a trailing comment
                    found.append((str(page.relative_to(REPO)), command))
    return found


def rules_for(command: str) -> list[str]:
    return [p for rules in (ELSEWHERE, EXEMPT, RUN_HERE) for p in rules if re.search(p, command)]


def commands_run_here(kind: str) -> list[str]:
    """The commands of a kind run here: those no other test runs and no exemption covers."""
    elsewhere = (*ELSEWHERE, *EXEMPT)
    return sorted(
        {
            c
            for _, c in all_commands()
            # The first rule that matches a command gives its kind.
            if next((k for p, k in RUN_HERE.items() if re.search(p, c)), None) == kind
            and not any(re.search(p, c) for p in elsewhere)
        }
    )


def test_every_command_has_a_rule():
    commands = all_commands()
    assert len(commands) > 30
    unclaimed = [f"{page}: {c}" for page, c in commands if not rules_for(c)]
    assert not unclaimed, "commands no rule runs:\n" + "\n".join(unclaimed)


@pytest.mark.parametrize("pattern", list(ELSEWHERE))
def test_commands_claimed_elsewhere_are_run_there(pattern):
    file, name = ELSEWHERE[pattern]
    assert any(re.search(pattern, c) for _, c in all_commands()), f"no command matches {pattern}"
    assert name in (REPO / "tests" / file).read_text(), f"{file} has no {name}"


def test_make_train_is_the_synthetic_fit():
    recipe = (REPO / "Makefile").read_text().split("\ntrain:", 1)[1].split("\n\n", 1)[0]
    assert "mts-lightning fit --config configs/synthetic.yaml $(ARGS)" in recipe
    assert "mts-lightning fit --config configs/synthetic.yaml" in commands_run_here("fit")


def test_benchmark_commands_use_options_the_scripts_have():
    for _, command in all_commands():
        match = re.match(r"^(?:\.venv/bin/)?python (benchmarks/\S+\.py)(.*)", command)
        if match:
            source = (REPO / match[1]).read_text()
            own = match[2].split(" -- ")[0]  # what follows " -- " goes to the runs' fit
            for option in re.findall(r"(--[\w-]+)", own):
                assert f'"{option}"' in source, f"{match[1]} has no option {option}"


# ---------------------------------------------------------------------- run here
@pytest.fixture
def user_folder(tmp_path, monkeypatch, one_thread):
    """A folder outside the checkout holding the configs ``init-config`` copies out, the
    corpus folders the commands name, and the audio files they read."""
    monkeypatch.setattr(sys, "argv", ["mts-lightning"])
    monkeypatch.chdir(tmp_path)
    for command in commands_run_here("init_config"):
        main(shlex.split(command)[1:])
    assert (tmp_path / "configs" / "synthetic.yaml").read_bytes() == (
        REPO / "configs" / "synthetic.yaml"
    ).read_bytes()
    # 3-s clips, as in the corpora: long enough for the paper configs' STFT frames and kernels.
    make_ravdess_folder(tmp_path / "RAVDESS", actors=range(1, 9), seconds=3.0)
    make_emodb_folder(tmp_path / "emodb", speakers=("03", "08", "09", "10", "11"), seconds=3.0)
    return tmp_path


def substituted(command: str, folder: Path, run: Path | None = None) -> list[str]:
    """The command's arguments, with the corpus folders and the run folder made here."""
    command = command.replace("~/data/RAVDESS", str(folder / "RAVDESS"))
    command = command.replace("~/data/emodb/wav", str(folder / "emodb" / "wav"))
    if run is not None:
        command = command.replace("$RUN", str(run))
    argv = shlex.split(command, comments=True)
    expanded = []
    for arg in argv:
        matches = sorted(glob.glob(arg)) if "*" in arg and not arg.startswith("[") else []
        expanded.append(str(matches[0]) if len(matches) == 1 else arg)
    return expanded


def test_fit_commands_build_from_the_copied_configs(user_folder, capsys):
    """Each fit command resolves and builds its model, data and trainer as written; the
    synthetic one (make train's job) then trains, shrunk to one short epoch."""
    commands = commands_run_here("fit")
    assert len(commands) >= 5
    for command in commands:
        argv = substituted(command, user_folder)
        assert argv[:2] == ["mts-lightning", "fit"]
        cli = MTSLightningCLI(args=argv[2:], run=False)
        assert cli.model.num_classes == cli.datamodule.num_classes >= 2, command
        for flag, value in zip(argv[2:], argv[3:], strict=False):
            if flag == "--data.root":
                assert cli.datamodule.hparams.root == value, command
            if flag == "--data.fold":
                assert cli.datamodule.hparams.fold == int(value), command
    main(["fit", "--config", "configs/synthetic.yaml", *TINY_SYNTHETIC, *TINY_TRAINER])
    assert "run folder (logs): " in capsys.readouterr().out


def test_print_config_command(user_folder, capsys):
    (command,) = commands_run_here("print_config")
    with pytest.raises(SystemExit) as exit_info:
        main(substituted(command, user_folder)[1:])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["backbone"] == "compact_cnn" and "data" in printed


def test_test_and_predict_commands_on_a_run(user_folder, capsys):
    main(["fit", "--config", "configs/synthetic.yaml", *TINY_SYNTHETIC, *TINY_TRAINER])
    run = user_folder / "lightning_logs" / "synthetic" / "version_0"
    assert list((run / "checkpoints").glob("best-*.ckpt"))
    corpus = SyntheticCorpus(SyntheticConfig(num_speakers=4, clips_per_speaker=6, duration=1.0))
    (user_folder / "some_folder").mkdir()
    for name, index in (("clip.wav", 0), ("some_folder/a.wav", 1)):
        sf.write(user_folder / name, corpus.render(index, 16000), 16000)
    commands = commands_run_here("from_run")
    assert len(commands) == 4
    for command in commands:
        main(substituted(command, user_folder, run)[1:])
    out = capsys.readouterr().out
    runs = sorted((user_folder / "lightning_logs" / "synthetic").glob("version_*"))
    predictions = [r / "predictions.csv" for r in runs if (r / "predictions.csv").is_file()]
    assert len(predictions) == 1 and len(predictions[0].read_text().splitlines()) == 3
    assert "test/UA" in out


def subset_values(argv: list[str], flag: str) -> list[str] | None:
    """The values after ``flag`` in ``argv`` (up to the next option), or None without it."""
    if flag not in argv:
        return None
    rest = argv[argv.index(flag) + 1 :]
    ends = [i for i, arg in enumerate(rest) if arg.startswith("--")]
    return rest[: ends[0] if ends else len(rest)]


def test_experiment_commands_plan_their_runs(user_folder, capsys):
    """The experiment commands as written, each with ``--dry-run`` (which lists every run
    the command would make: the file's, or those of its ``--variants``, ``--folds`` and
    ``--seeds``; the shipped experiment files run end to end, shrunk, in
    tests/experiment/test_experiment_files.py)."""
    commands = commands_run_here("experiment")
    assert len(commands) >= 6
    for command in commands:
        argv = substituted(command, user_folder)
        own = argv[: argv.index("--")] if "--" in argv else argv
        if "--dry-run" not in own:
            argv.insert(len(own), "--dry-run")
        main(argv[1:])
        lines = capsys.readouterr().out.strip().splitlines()
        spec = load_spec(user_folder / argv[argv.index("--config") + 1])
        subset = {flag: subset_values(own, flag) for flag in ("--variants", "--folds", "--seeds")}
        plan = spec.plan(
            subset["--variants"],
            None if subset["--folds"] is None else [int(f) for f in subset["--folds"]],
            None if subset["--seeds"] is None else [int(s) for s in subset["--seeds"]],
        )
        assert len(lines) == len(plan) + 1, command
        assert all(line.startswith("mts-lightning experiment run ") for line in lines[:-1])
        for extra in argv[argv.index("--") + 1 :] if "--" in argv else []:
            assert extra in lines[0], command


# ---------------------------------------------------------------------- code blocks
@pytest.fixture
def example_names(tmp_path, monkeypatch, one_thread):
    """The names the examples leave to the reader (``my_cnn``, ``my_lightning_module``,
    ``my_datamodule``), and trainers shrunk to one short epoch."""
    from mts_lightning import EmotionClassifier, SpectrogramDataModule

    monkeypatch.chdir(tmp_path)
    data = SpectrogramDataModule(
        corpus_options=dict(num_classes=3, num_speakers=5, clips_per_speaker=8, duration=1.0),
        duration=1.0,
        batch_size=4,
        cache_dir=str(tmp_path / "cache"),
    )
    data.setup("fit")
    model = EmotionClassifier(
        "compact_cnn", class_names=data.class_names, input_shape=data.input_shape
    )
    cnn = nn.Sequential(
        OrderedDict(
            features=nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            classifier=nn.Linear(4, 3),
        )
    )
    trainer = pl.Trainer

    def shrunk(*args, **kwargs):
        kwargs.update(max_epochs=1, limit_train_batches=4, enable_progress_bar=False)
        return trainer(*args, **kwargs)

    monkeypatch.setattr(pl, "Trainer", shrunk)
    return {"my_cnn": cnn, "my_lightning_module": model, "my_datamodule": data}


def python_blocks() -> list[tuple[str, int, str]]:
    blocks = []
    for page in doc_pages.pages():
        name = str(page.relative_to(REPO))
        if (
            name == "docs/inference.md"
        ):  # inference/test_recognizer.py runs it with a trained checkpoint
            continue
        python = [code for language, code in doc_pages.code_blocks(page) if language == "python"]
        blocks += [(name, i, code) for i, code in enumerate(python)]
    return blocks


@pytest.mark.parametrize(("page", "index", "code"), python_blocks(), ids=lambda v: str(v)[:40])
def test_python_examples_run(page, index, code, example_names, capsys):
    namespace = dict(example_names)
    exec(compile(code, f"{page} (block {index})", "exec"), namespace)
    if "MultiscaleConv2d(1, 16" in code:  # the shortest layer example prints shape and usage
        assert "torch.Size([8, 16, 128, 64])" in capsys.readouterr().out
    if "usage.history" in code:
        usage = namespace["usage"]
        assert set(usage.history["val"][-1]) == {
            name
            for name, m in example_names["my_lightning_module"].named_modules()
            if type(m).__name__ == "MultiscaleConv2d"
        }
    if "convert_to_mts(my_cnn" in code:
        layer = namespace["model"].features[0]
        assert type(layer).__name__ == "MultiscaleConv2d"
        assert type(namespace["model"].classifier) is nn.Linear


def test_yaml_examples(tmp_path, user_folder):
    """The model sections of the callbacks page and of the training page (a fair conv twin)
    build; the experiment file of the experiments page loads, with its base config next to
    it as its relative path says."""
    (model_yaml,) = [
        c for lang, c in doc_pages.code_blocks(REPO / "docs/callbacks.md") if lang == "yaml"
    ]
    config = yaml.safe_load(model_yaml)
    model_file = tmp_path / "model.yaml"
    model_file.write_text(yaml.safe_dump(config))
    cli = MTSLightningCLI(
        args=["--config=configs/synthetic.yaml", f"--config={model_file}", *TINY_SYNTHETIC],
        run=False,
    )
    layer = cli.model.backbone.features[0]
    assert layer.kernel_sharing == "autograd"
    assert layer.scale_factors == ((0.7, 1.0), (1.428, 1.0))

    (twin_yaml,) = [
        c for lang, c in doc_pages.code_blocks(REPO / "docs/training.md") if lang == "yaml"
    ]
    model_file.write_text(twin_yaml)
    cli = MTSLightningCLI(
        args=["--config=configs/synthetic.yaml", f"--config={model_file}", *TINY_SYNTHETIC],
        run=False,
    )
    backbone = cli.model.backbone
    assert not any(type(m).__name__ == "MultiscaleConv2d" for m in backbone.modules())
    assert backbone.features[0].out_channels == round(16 * 1.74)
    assert backbone.pooling == "stats"

    (experiment_yaml,) = [
        c for lang, c in doc_pages.code_blocks(REPO / "docs/experiments.md") if lang == "yaml"
    ]
    experiment_file = user_folder / "configs" / "experiments" / "from_the_docs.yaml"
    experiment_file.write_text(experiment_yaml)
    spec = load_spec(experiment_file)
    assert set(spec.variants) == {"mts", "conv", "baseline"}
    assert len(spec.plan(None, None, None)) == 3 * 5 * 3
