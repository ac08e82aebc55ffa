"""``mts-lightning experiment``: run an experiment file, one of its runs, or collect runs.

    mts-lightning experiment --config FILE --output_dir DIR [--variants ...] [--folds ...]
        [--seeds ...] [--max_runs N] [--launcher inprocess|slurm|submitit-local] [--dry-run]
        [-- FIT OVERRIDES]
    mts-lightning experiment run --config FILE --output_dir DIR --variant V --fold F --seed S
        [-- FIT OVERRIDES]
    mts-lightning experiment collect DIR

Arguments after ``--`` are added to every run's ``fit`` (e.g. ``--trainer.max_epochs=2``); they
are recorded with the run, so a resumed experiment must be given the same ones.

Before the first run starts, every configuration the runs will use is parsed and built without
running (each variant's fit and its test under every condition, base config, overrides and
arguments after ``--`` included): a mistake ends the command with one line naming the file,
its entry and the error, exit code 2. A run that another live process is making on the same
output folder is skipped with a line saying so (the next command collects it); a damaged
``result.json`` is named, and its run redone (or left out by ``collect``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mts_lightning.experiment.spec import ExperimentError, RunKey, load_spec

PROG = "mts-lightning experiment"


def _split_extra(args: Sequence[str]) -> tuple[list[str], list[str]]:
    args = list(args)
    if "--" in args:
        i = args.index("--")
        return args[:i], args[i + 1 :]
    return args, []


def _experiment_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run every (variant, fold, seed) of an experiment file: fit, then test the "
        "checkpoint chosen on validation under every test condition. Also: "
        f"'{PROG} run ...' (one run) and '{PROG} collect DIR'.",
        epilog="Arguments after '--' are added to every run's fit, e.g. -- --trainer.max_epochs=2",
    )
    parser.add_argument("--config", required=True, help="the experiment YAML file")
    parser.add_argument("--output_dir", required=True, help="folder of the runs and results")
    parser.add_argument("--variants", nargs="+", help="only these variants of the file")
    parser.add_argument("--folds", nargs="+", type=int, help="only these folds of the file")
    parser.add_argument("--seeds", nargs="+", type=int, help="only these seeds of the file")
    parser.add_argument(
        "--train_corpora", nargs="+", help="only these training corpora of a cross-corpus file"
    )
    parser.add_argument(
        "--max_runs", type=int, help="run at most this many unrecorded runs, then stop"
    )
    parser.add_argument(
        "--launcher",
        choices=("inprocess", "slurm", "submitit-local"),
        default="inprocess",
        help="inprocess: one run after another in this process (default); slurm: every run a "
        "SLURM job through submitit; submitit-local: submitit jobs on this machine",
    )
    parser.add_argument(
        "--dry-run",
        "--dry_run",
        dest="dry_run",
        action="store_true",
        help="print one mts-lightning command line per unrecorded run, run nothing",
    )
    return parser


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"{PROG} run", description="One run of an experiment.")
    parser.add_argument("--config", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--variant", required=True)
    parser.add_argument("--fold", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--train_corpus", help="the training corpus (cross-corpus files)")
    return parser


def _collect_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} collect",
        description="Rebuild results.csv, the summary and the figures from every run folder "
        "under DIR (wherever the runs were written).",
    )
    parser.add_argument("output_dir")
    return parser


def main(argv: Sequence[str]) -> None:
    """Entry point of ``mts-lightning experiment``; user errors exit 2 with one line."""
    try:
        _main(list(argv))
    except ExperimentError as err:
        sys.stderr.write(f"{PROG}: error: {err}\n")
        sys.exit(2)


def _main(argv: list[str]) -> None:
    from mts_lightning.experiment import runner

    if argv[:1] == ["collect"]:
        output_dir = Path(_collect_parser().parse_args(argv[1:]).output_dir)
        records, damaged = runner.find_records(output_dir)
        _print_lines(damaged)
        _report(runner.write_outputs(output_dir, records), len(records), None)
        return
    if argv[:1] == ["run"]:
        own, extra = _split_extra(argv[1:])
        args = _run_parser().parse_args(own)
        spec = load_spec(args.config)
        corpora = None if args.train_corpus is None else [args.train_corpus]
        key = spec.plan([args.variant], [args.fold], [args.seed], corpora)[0]
        if _pending([key], Path(args.output_dir)):
            runner.check_runs(spec, [key], Path(args.output_dir), extra)
        if runner.run_one(spec, key, args.output_dir, extra) is not None:
            print(f"recorded in {runner.run_folder(args.output_dir, key) / runner.RESULT_FILE}")
        return
    own, extra = _split_extra(argv)
    args = _experiment_parser().parse_args(own)
    if args.max_runs is not None and args.max_runs < 1:
        raise ExperimentError(f"--max_runs must be >= 1, got {args.max_runs}")
    spec = load_spec(args.config)
    plan = spec.plan(args.variants, args.folds, args.seeds, args.train_corpora)
    # The tables cover every recorded run of the file's grid, not only this command's subset:
    # a subset run into a folder of other runs (another process, an earlier command) must not
    # shrink the results to its own runs.
    grid = spec.plan()
    output_dir = Path(args.output_dir)
    damage = _pending(plan, output_dir)
    pending = list(damage)
    if args.dry_run:
        from mts_lightning.experiment.launchers import run_command

        for key in pending:
            folder = runner.run_folder(output_dir, key)
            holder = runner.run_holder(folder)
            if holder is not None:
                print(f"# {folder}: another process is making it ({holder})")
                continue
            if damage[key]:
                print(f"# {damage[key]}: its run is redone")
            print(run_command(spec, key, output_dir, extra))
        print(f"# then: mts-lightning experiment collect {output_dir}")
        return
    done = len(plan) - len(pending)
    print(
        f"{spec.name}: {len(plan)} runs ({len(spec.variants)} variants x folds x seeds), "
        f"{done} recorded already, {len(pending)} to run; output in {output_dir}",
        flush=True,
    )
    todo = pending[: args.max_runs] if args.max_runs else pending
    runner.check_runs(spec, todo, output_dir, extra)
    output_dir.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    if args.launcher == "inprocess":
        for i, key in enumerate(todo, 1):
            print(f"[{i}/{len(todo)}] {key.label}", flush=True)
            if runner.run_one(spec, key, output_dir, extra) is None:
                continue  # made by another process
            runner.write_results(
                output_dir / "results.csv",
                runner.result_rows(runner.planned_records(output_dir, grid)),
            )
    else:
        from mts_lightning.experiment.launchers import submit_runs

        cluster = "slurm" if args.launcher == "slurm" else "local"
        failures = submit_runs(spec, todo, output_dir, extra, cluster)
    # Runs recorded before a variant was added to the file are read with the file as it is.
    description = spec.description()
    records = [
        (folder, {**record, "experiment": description})
        for folder, record in runner.planned_records(output_dir, grid)
    ]
    if not records and not failures:
        print("No run recorded yet: run the same command again once the others are done.")
        return
    if not records:
        raise ExperimentError(f"no run recorded in {output_dir}: " + "; ".join(failures))
    recorded = {folder for folder, _ in records}
    unfinished = sum(runner.run_folder(output_dir, key) not in recorded for key in plan)
    _report(runner.write_outputs(output_dir, records), len(records), len(grid), unfinished)
    if failures:
        raise ExperimentError(
            f"{len(failures)} run(s) failed (rerun the command to redo them): "
            + "; ".join(failures)
        )


def _pending(plan: Sequence[RunKey], output_dir: Path) -> dict[RunKey, str | None]:
    """The runs of ``plan`` without a complete record, in plan order, each with what damages
    its ``result.json`` (None when it has none: not run, or interrupted)."""
    from mts_lightning.experiment import runner

    pending: dict[RunKey, str | None] = {}
    for key in plan:
        try:
            if runner.read_record(runner.run_folder(output_dir, key)) is None:
                pending[key] = None
        except runner.DamagedRecord as err:
            pending[key] = str(err)
    return pending


def _print_lines(lines: Sequence[str]) -> None:
    if lines:
        print("\n".join(lines), flush=True)


def _report(
    outputs: dict, recorded: int, planned: int | None, unfinished: int | None = None
) -> None:
    """Print the notes, the count of recorded runs (of the file's ``planned`` grid) and the
    files written; ``unfinished``: runs of this command's subset not recorded yet."""
    of = f" of {planned}" if planned is not None else ""
    _print_lines(outputs["notes"])
    lines = [f"{recorded}{of} runs recorded."]
    if unfinished:
        lines.append("Not finished: run the same command again to continue.")
    lines += [f"  {path}" for path in outputs["files"]]
    if outputs["wandb_dir"]:
        lines.append(f"  W&B summary run: {outputs['wandb_dir']}")
    print("\n".join(lines), flush=True)
