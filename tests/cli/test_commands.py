"""The command table (``mts-lightning --help`` and its commands), the CLI's one reader of
Lightning's private parser attributes, and the ground-floor file helpers of
``mts_lightning.io`` (the import directions: tests/test_architecture.py)."""

from __future__ import annotations

import doctest
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mts_lightning.cli import MTSLightningCLI, every_parser, parser_state
from mts_lightning.commands import COMMANDS, LIGHTNING_COMMANDS, main
from mts_lightning.io import atomic_path, atomic_write, read_json, stable_hash, write_json

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess:
    """``python -m mts_lightning ARGS`` as a user runs it (this checkout's package)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "mts_lightning", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


def _listed(text: str) -> list[str]:
    """The command names of a command list (``  NAME  summary`` lines)."""
    return [line.split()[0] for line in text.splitlines() if line.startswith("  ") and line.strip()]


@pytest.mark.slow
@pytest.mark.e2e
def test_help_lists_every_command_with_no_warning():
    result = _run("--help")
    assert result.returncode == 0, result.stderr
    assert _listed(result.stdout) == list(COMMANDS)
    assert set(LIGHTNING_COMMANDS) | {"timeline", "experiment", "export", "init-config"} == set(
        COMMANDS
    )
    assert "warn" not in (result.stdout + result.stderr).lower()
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["fitt"], "mts-lightning: error: unknown command 'fitt' (did you mean 'fit'?)"),
        (["collect"], "mts-lightning: error: unknown command 'collect'"),
        ([], "mts-lightning: error: a command is required, one of fit, validate"),
        (["--trainer.max_epochs=1"], "mts-lightning: error: a command is required, one of"),
    ],
)
def test_missing_or_unknown_command_lists_them_all(capsys, args, problem):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0].startswith(problem)
    assert _listed(err) == list(COMMANDS)


@pytest.mark.slow
@pytest.mark.e2e
def test_mistyped_command_from_the_command_line():
    result = _run("exprt")
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        "mts-lightning: error: unknown command 'exprt' (did you mean 'export'?)"
    )
    assert _listed(result.stderr) == list(COMMANDS)
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "usage"),
    [
        (["fit", "--help"], "usage: mts-lightning [options] fit"),
        (["validate", "--help"], "usage: mts-lightning [options] validate"),
        (["test", "--help"], "usage: mts-lightning [options] test"),
        (["predict", "--help"], "usage: mts-lightning [options] predict"),
        (["timeline", "--help"], "usage: mts-lightning predict --timeline"),
        (["predict", "--timeline", "--help"], "usage: mts-lightning predict --timeline"),
        (["experiment", "--help"], "usage: mts-lightning experiment"),
        (["experiment", "run", "--help"], "usage: mts-lightning experiment run"),
        (["experiment", "collect", "--help"], "usage: mts-lightning experiment collect"),
        (["export", "--help"], "usage: mts-lightning export"),
        (["init-config", "--help"], "usage: mts-lightning init-config"),
    ],
)
def test_each_command_has_its_own_help(capsys, monkeypatch, args, usage):
    monkeypatch.setattr(sys, "argv", ["mts-lightning"])
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(usage)


def test_lightning_parser_attributes_are_where_parser_state_reads_them(monkeypatch):
    """Fails when Lightning renames or drops what ``LightningCLI.setup_parser`` builds (the
    experiment runner reuses the parsers through :func:`parser_state`)."""
    monkeypatch.setattr(sys, "argv", ["mts-lightning"])
    seen = {}

    class Built(Exception):
        pass

    class Probe(MTSLightningCLI):
        def parse_arguments(self, parser, args):
            seen["state"] = parser_state(self)
            seen["parsers"] = every_parser(self)
            raise Built

    with pytest.raises(Built):
        Probe(args=["fit"])
    state = seen["state"]
    assert set(state["_subcommand_parsers"]) == set(LIGHTNING_COMMANDS)
    assert set(state["_subcommand_method_arguments"]) == set(LIGHTNING_COMMANDS)
    assert "ckpt_path" in state["_subcommand_method_arguments"]["fit"]
    assert seen["parsers"][0] is state["parser"]
    assert [p.prog for p in seen["parsers"][1:]] == [
        f"mts-lightning [options] {name}" for name in LIGHTNING_COMMANDS
    ]


def test_parser_state_says_when_lightning_changed():
    class Bare(MTSLightningCLI):
        def __init__(self):  # no parser built
            pass

    with pytest.raises(RuntimeError, match="no longer sets parser, _subcommand_method_arguments"):
        parser_state(Bare())


# ---------------------------------------------------------------------- io
def test_atomic_write_keeps_the_old_file_when_the_writer_raises(tmp_path):
    target = tmp_path / "result.json"
    target.write_bytes(b"old")

    def half_then_fail(f):
        f.write(b"half a fi")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]

    atomic_write(tmp_path / "new" / "file.bin", lambda f: f.write(b"whole"))
    assert (tmp_path / "new" / "file.bin").read_bytes() == b"whole"
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["file.bin"]


def test_atomic_path_leaves_nothing_when_the_block_raises(tmp_path):
    target = tmp_path / "model.onnx"
    with pytest.raises(ValueError, match="check failed"), atomic_path(target) as tmp:
        tmp.write_bytes(b"graph")
        raise ValueError("check failed")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".model.onnx.")
        tmp.write_bytes(b"graph")
        Path(f"{tmp}.data").write_bytes(b"weights")  # as the ONNX exporter does
    assert target.read_bytes() == b"graph"
    assert list(tmp_path.iterdir()) == [target]


def test_json_round_trip_and_damaged_files(tmp_path):
    path = tmp_path / "a" / "settings.json"
    write_json(path, {"b": 1, "a": [0.5, None]}, sort_keys=True)
    assert path.read_text() == '{\n  "a": [\n    0.5,\n    null\n  ],\n  "b": 1\n}'
    assert read_json(path) == {"a": [0.5, None], "b": 1}
    path.write_bytes(b'{"a": ')
    with pytest.raises(ValueError):
        read_json(path)
    path.write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(ValueError):
        read_json(path)


def test_io_example_runs():
    import mts_lightning.io

    assert doctest.testmod(mts_lightning.io).failed == 0


def test_stable_hash_is_the_cache_key_rule():
    """The feature cache's keys: changing this rule would orphan every cached feature."""
    assert stable_hash("features", {"n_mels": 64}) == "538bef45e287c015fd0d0f13cbb4481f32c7ba00"
    assert stable_hash({"a": 1, "b": 2}) == stable_hash({"b": 2, "a": 1})
    assert stable_hash(Path("x")) == stable_hash("x")
