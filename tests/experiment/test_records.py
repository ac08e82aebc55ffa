"""Output folders shared and damaged: a run that a live process is making is left to it (a
file lock that a killed process does not leave stuck), and a damaged ``result.json`` is named,
its run redone by the next command and left out by ``collect``, never a traceback."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mts_lightning.experiment.runner import (
    DamagedRecord,
    claim_run,
    lock_path,
    read_record,
    read_results,
    run_holder,
)
from tests.experiment.test_runs import CONDITIONS, REPO, TINY, experiment, write_experiment

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch, one_thread):
    monkeypatch.setattr(sys, "argv", ["mts-lightning"])


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One variant, one fold, seeds 0 and 1, recorded: the experiment file and its folder."""
    root = tmp_path_factory.mktemp("records")
    spec = write_experiment(
        root, variants={"mts": []}, folds=[0], seeds=[0, 1], conditions=CONDITIONS[:1]
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MTS_LIGHTNING_CACHE", str(root / "cache"))
        mp.setattr(sys, "argv", ["mts-lightning"])
        experiment(f"--config={spec}", f"--output_dir={root / 'out'}", "--", *TINY)
    return spec, root / "out"


@pytest.fixture
def copy(recorded, tmp_path, monkeypatch):
    """A copy of the recorded folder to damage, and a command line for it."""
    spec, out = recorded
    monkeypatch.setenv("MTS_LIGHTNING_CACHE", str(out.parent / "cache"))
    target = tmp_path / "out"
    shutil.copytree(out, target)
    return spec, target, [f"--config={spec}", f"--output_dir={target}"]


def seed_folder(out: Path, seed: int) -> Path:
    return out / "runs" / "mts" / f"fold0_seed{seed}"


def seeds_in_results(out: Path) -> list[int]:
    return [row["seed"] for row in read_results(out / "results.csv")]


# ---------------------------------------------------------------------- damaged records
def test_an_emptied_record_is_named_left_out_and_its_run_redone(copy, capsys):
    """The reported input (issue 18, I): ``: > out/runs/mts/fold0_seed1/result.json``."""
    spec, out, args = copy
    record = seed_folder(out, 1) / "result.json"
    record.write_bytes(b"")
    damage = f"{record} is damaged (not JSON: Expecting value: line 1 column 1 (char 0))"

    experiment("collect", str(out))
    output = capsys.readouterr().out
    assert f"left out: {damage}\n" in output and "1 runs recorded." in output
    assert seeds_in_results(out) == [0]

    experiment(*args, "--dry-run", "--", *TINY)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"# {damage}: its run is redone"
    assert lines[1].startswith("mts-lightning experiment run ") and "--seed=1" in lines[1]
    assert len(lines) == 3  # seed 0 stays recorded

    experiment(*args, "--", *TINY)
    output = capsys.readouterr().out
    assert "2 runs (1 variants x folds x seeds), 1 recorded already, 1 to run" in output
    assert f"mts fold 0 seed 1: {damage}; redone" in output and "2 of 2 runs recorded." in output
    assert read_record(seed_folder(out, 1))["seed"] == 1
    assert seeds_in_results(out) == [0, 1]


def edited(change):
    """A damage that parses the record, changes it and writes it back as valid JSON."""
    return lambda text: json.dumps(change(json.loads(text))).encode()


def result_ua(value):
    return edited(lambda r: {**r, "results": [{**r["results"][0], "UA": value}]})


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda text: text[: len(text) // 2], "not JSON: "),  # cut short
        (lambda text: b"\xff\xfe" + text, "not JSON: "),  # not text
        (lambda text: b"[]", "the record should be a JSON object, found a list"),
        (lambda text: b"null", "the record should be a JSON object, found null"),
        (edited(lambda r: {k: v for k, v in r.items() if k != "results"}), "the record lacks"),
        (edited(lambda r: {**r, "results": []}), "no test result"),
        (edited(lambda r: {**r, "fold": "0"}), "the record: fold is not int"),
        (edited(lambda r: {**r, "experiment": {"name": "x"}}), "'experiment' lacks variants"),
        (result_ua("0.5"), "results[0]: UA is not a number"),
        (result_ua(None), "results[0]: UA is not a number"),
    ],
)
def test_damaged_records_are_named_and_left_out_never_fatal(copy, capsys, damage, problem):
    spec, out, args = copy
    path = seed_folder(out, 1) / "result.json"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DamagedRecord, match=rf"^{re.escape(f'{path} is damaged ({problem}')}"):
        read_record(path.parent)

    experiment("collect", str(out))
    output = capsys.readouterr().out
    assert f"left out: {path} is damaged ({problem}" in output and "1 runs recorded." in output
    assert seeds_in_results(out) == [0]
    experiment(*args, "--dry-run", "--", *TINY)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"# {path} is damaged ({problem}") and "--seed=1" in lines[1]


def test_collect_with_every_record_damaged_says_so(copy, capsys):
    spec, out, args = copy
    for seed in (0, 1):
        (seed_folder(out, seed) / "result.json").write_text("{")
    with pytest.raises(SystemExit) as exit_info:
        experiment("collect", str(out))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no complete result.json" in err
    assert f"left out: {seed_folder(out, 0) / 'result.json'} is damaged (not JSON" in err


def test_a_record_without_its_checkpoint_keeps_its_scores(copy, capsys):
    spec, out, args = copy
    record = read_record(seed_folder(out, 1))
    (seed_folder(out, 1) / record["checkpoint"]).unlink()
    experiment("collect", str(out))
    output = capsys.readouterr().out
    assert (
        f"{seed_folder(out, 1)}: its checkpoint {record['checkpoint']} is gone (its scores are "
        "kept)" in output
    )
    assert "2 runs recorded." in output and seeds_in_results(out) == [0, 1]
    experiment(*args, "--dry-run", "--", *TINY)  # recorded: nothing to run again
    assert capsys.readouterr().out.splitlines() == [
        f"# then: mts-lightning experiment collect {out}"
    ]


def test_a_damaged_run_config_costs_only_the_wandb_summary(copy, capsys):
    spec, out, args = copy
    (seed_folder(out, 0) / "config.yaml").write_text("trainer: [unclosed\n")
    experiment("collect", str(out))
    output = capsys.readouterr().out
    assert f"{seed_folder(out, 0) / 'config.yaml'} is damaged (not YAML: line 2: " in output
    assert "no W&B summary run" in output and "2 runs recorded." in output


# ---------------------------------------------------------------------- two processes
HOLD = """
import sys, time
from pathlib import Path
from mts_lightning.experiment.runner import claim_run
with claim_run(Path(sys.argv[1])) as holder:
    print("claimed" if holder is None else "refused", flush=True)
    time.sleep(600)
"""


def hold_claim(folder: Path) -> subprocess.Popen:
    """Another process making the run in ``folder`` (it holds the run's claim)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], env=env, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline() == "claimed\n"
    return process


def test_a_claim_is_exclusive_and_leaves_no_file(tmp_path):
    folder = tmp_path / "runs" / "v" / "fold0_seed0"
    with claim_run(folder) as first:
        assert first is None
        assert lock_path(folder).read_text().startswith(f"pid {os.getpid()} on ")
        with claim_run(folder) as second:  # another open file: refused even in one process
            assert second.startswith(f"pid {os.getpid()} on {socket.gethostname()} since ")
        assert run_holder(folder) == second
    assert not lock_path(folder).exists() and run_holder(folder) is None
    with claim_run(folder) as again:
        assert again is None


def test_a_run_made_by_a_live_process_is_left_to_it(copy, capsys):
    """Issue 18, H: a second command on the same folder never touches a live process's run;
    once that process is killed, its claim is free and the run is redone."""
    spec, out, args = copy
    folder = seed_folder(out, 1)
    (folder / "result.json").unlink()  # seed 1 is being made...
    (folder / "metrics.csv").write_text("epoch,step\n0,1\n")  # ...and has written this so far
    holder = hold_claim(folder)
    try:
        held_by = f"pid {holder.pid} on {socket.gethostname()} since "
        experiment(*args, "--dry-run", "--", *TINY)
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].startswith(f"# {folder}: another process is making it ({held_by}")
        assert len(lines) == 2  # no command line for it

        experiment(*args, "--", *TINY)
        output = capsys.readouterr().out
        assert f"mts fold 0 seed 1: another process is making it ({held_by}" in output
        assert "1 of 2 runs recorded." in output and "Not finished" in output
        experiment("run", *args, "--variant=mts", "--fold=0", "--seed=1", "--", *TINY)
        output = capsys.readouterr().out
        assert "another process is making it" in output and "recorded in" not in output
        assert (folder / "metrics.csv").read_text() == "epoch,step\n0,1\n"  # untouched
        assert not (folder / "result.json").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # Killed: its claim is free at once; its lock file stays until the run is redone.
    assert lock_path(folder).read_text().startswith(held_by) and run_holder(folder) is None
    experiment(*args, "--", *TINY)
    output = capsys.readouterr().out
    assert "mts fold 0 seed 1: interrupted before; redone" in output
    assert "2 of 2 runs recorded." in output and not lock_path(folder).exists()
    assert "val/UA" in (folder / "metrics.csv").read_text()  # the redone run's own log
    assert seeds_in_results(out) == [0, 1]


# ---------------------------------------------------------------------- one experiment
def edit_record(folder: Path, change) -> None:
    path = folder / "result.json"
    record = json.loads(path.read_text())
    change(record["experiment"])
    path.write_text(json.dumps(record))


def test_runs_recorded_before_a_variant_was_added_are_collected_with_it(copy, capsys):
    """A variant added to the file once runs were made: the older records list fewer variants,
    and every run is still one experiment's, in the longer list's order."""
    spec, out, args = copy
    edit_record(seed_folder(out, 1), lambda e: e.update(variants=["mts", "bag_of_frames"]))
    experiment("collect", str(out))
    assert "2 runs recorded." in capsys.readouterr().out
    assert seeds_in_results(out) == [0, 1]


@pytest.mark.parametrize(
    "change",
    [
        lambda e: e.update(name="another"),
        lambda e: e.update(conditions=e["conditions"] + [{"name": "tempo_2", "x": 2.0}]),
    ],
    ids=["name", "conditions"],
)
def test_runs_of_different_experiments_are_refused_in_one_line(copy, capsys, change):
    spec, out, args = copy
    edit_record(seed_folder(out, 1), change)
    with pytest.raises(SystemExit) as exit_info:
        experiment("collect", str(out))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds runs of different experiments" in err
    assert "may differ in their variants only" in err
