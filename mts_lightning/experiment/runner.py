"""Runs of an experiment: each (variant, fold, seed) an ordinary ``fit`` and ``test`` of its
selected checkpoint under every condition, in its own folder, recorded in ``result.json``.

Layout of an output folder::

    DIR/runs/<variant>/fold<F>_seed<S>/   the run folder: config.yaml, checkpoints/, metrics.csv,
                                          test/<condition>/ (one per test), result.json
                                          (cross-corpus: <train corpus>_fold<F>_seed<S>/, with
                                          test/<test corpus>/<condition>/)
    DIR/results.csv                       one row per run and condition, rewritten atomically
                                          from the result.json files after every run
    DIR/summary.md, summary.csv, ...      statistics and figures (stats.py, figures.py)

``result.json`` is written last and atomically: a run folder without it is an interrupted
run, deleted and redone from scratch; a run with it is never run again. A ``result.json``
that is not a complete record (empty, cut short, another shape) is reported by its path: its
run is redone like an interrupted one, and ``collect`` leaves it out.

A run is made under a lock, ``DIR/runs/<variant>/fold<F>_seed<S>.lock`` (an OS file lock,
released when its process ends however it ends): a second command on the same folder skips a
run that a live process is making, and never touches its folder; the lock of a killed
process is free again at once (its file, naming the process, stays until the run is redone).
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import logging
import os
import shutil
import socket
import sys
import time
from argparse import ArgumentError
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import torch
from jsonargparse import Namespace

from mts_lightning.cli import MTSLightningCLI, every_parser, finish_wandb, one_line, parser_state
from mts_lightning.experiment.spec import Condition, ExperimentError, ExperimentSpec, RunKey
from mts_lightning.io import atomic_write, read_json, write_csv
from mts_lightning.run_dir import run_dir

RESULT_FILE = "result.json"
RESULT_COLUMNS = (
    "variant",
    "fold",
    "seed",
    "condition",
    "WA",
    "UA",
    "macro_F1",
    "loss",
    "epochs",
    "run_folder",
    "checkpoint",
)
METRICS = ("WA", "UA", "macro_F1", "loss")
#: The columns a cross-corpus experiment adds to ``results.csv``, after ``seed``.
CROSS_CORPUS_COLUMNS = ("train_corpus", "test_corpus")
#: The fields of a ``result.json`` and their types (``experiment`` as ``spec.description()``).
_RECORD_FIELDS = {
    "experiment": dict,
    "variant": str,
    "fold": int,
    "seed": int,
    "fit_args": list,
    "epochs": int,
    "checkpoint": str,
    "results": list,
}
_DESCRIPTION_FIELDS = {
    "name": str,
    "variants": list,
    "conditions": list,
    "reference_condition": str,
    "x_label": str,
}


class DamagedRecord(ExperimentError):
    """A ``result.json`` that is not a complete record; the message names the file."""


def run_folder(output_dir: str | Path, key: RunKey) -> Path:
    """The folder of one run: ``output_dir/runs/<variant>/fold<F>_seed<S>``."""
    return Path(output_dir) / "runs" / key.variant / key.folder_name


class _RunCLI(MTSLightningCLI):
    """The ordinary CLI with every logger placed in the run's folder: CSV/TensorBoard-style
    loggers at ``runs/<variant>/fold<F>_seed<S>``, W&B runs saved inside it and named after it.

    The argument parser is built once per process and reused: building it costs more than a
    second, paid again by every fit and every test condition otherwise.
    """

    _parsers: ClassVar[dict[bool, dict[str, Any]]] = {}

    def __init__(self, folder: Path, *args: Any, **kwargs: Any) -> None:
        self.run_folder = folder
        super().__init__(*args, **kwargs)

    def setup_parser(
        self, add_subcommands: bool, main_kwargs: dict[str, Any], subparser_kwargs: dict[str, Any]
    ) -> None:
        cached = self._parsers.get(add_subcommands)
        if cached is None:
            super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)
            cached = self._parsers[add_subcommands] = parser_state(self)
        for name, value in cached.items():
            setattr(self, name, value)

    def before_instantiate_classes(self) -> None:
        super().before_instantiate_classes()
        config = self.config.get(str(self.subcommand), self.config)
        config.trainer.default_root_dir = str(self.run_folder)
        loggers = config.trainer.get("logger")
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            if not (isinstance(logger, Namespace) and "init_args" in logger):
                continue
            init_args = logger.init_args
            if str(logger.class_path).endswith("WandbLogger"):
                init_args.save_dir = str(self.run_folder)
                init_args.name = f"{self.run_folder.parent.name}_{self.run_folder.name}"
            elif all(k in init_args for k in ("save_dir", "name", "version")):
                init_args.save_dir = str(self.run_folder.parent.parent)
                init_args.name = self.run_folder.parent.name
                init_args.version = self.run_folder.name


@contextmanager
def _own_argv() -> Iterator[None]:
    """Runs are built from argument lists: hide the experiment command's own ``sys.argv`` from
    LightningCLI (which warns when it sees both)."""
    argv = sys.argv
    sys.argv = argv[:1]
    try:
        yield
    finally:
        sys.argv = argv


def read_record(folder: Path) -> dict[str, Any] | None:
    """The recorded result of the run in ``folder``, or None when it has none.

    Raises :class:`DamagedRecord` when its ``result.json`` is not a complete record.
    """
    path = folder / RESULT_FILE
    if not path.is_file():
        return None
    try:
        record = read_json(path)
    except ValueError as err:  # not UTF-8, or not JSON
        raise DamagedRecord(f"{path} is damaged (not JSON: {err})") from None
    problem = _record_problem(record)
    if problem:
        raise DamagedRecord(f"{path} is damaged ({problem})")
    return record


def _record_problem(record: Any) -> str | None:
    """What keeps ``record`` (a parsed ``result.json``) from being a complete record."""
    problem = _fields_problem(record, _RECORD_FIELDS, "the record") or _fields_problem(
        record["experiment"], _DESCRIPTION_FIELDS, "'experiment'"
    )
    if problem:
        return problem
    if not record["results"]:
        return "no test result"
    fields = {"condition": str, **dict.fromkeys(METRICS, float)}
    for i, result in enumerate(record["results"]):
        problem = _fields_problem(result, fields, f"results[{i}]")
        if problem:
            return problem
    return None


def _fields_problem(value: Any, fields: dict[str, type], what: str) -> str | None:
    """What keeps ``value`` from being a JSON object with ``fields`` of their types (a float
    field takes any number)."""
    if not isinstance(value, dict):
        found = {list: "a list", str: "a string", bool: "true or false", type(None): "null"}
        return f"{what} should be a JSON object, found {found.get(type(value), 'a number')}"
    missing = [k for k in fields if k not in value]
    if missing:
        return f"{what} lacks {', '.join(missing)}"
    for key, kind in fields.items():
        item = value[key]
        allowed = (int, float) if kind is float else kind
        if not isinstance(item, allowed) or (kind in (int, float) and isinstance(item, bool)):
            return f"{what}: {key} is not {'a number' if kind is float else kind.__name__}"
    return None


class ConfigRefused(Exception):
    """What a run's command would report as a configuration error (one line)."""


class _CheckCLI(_RunCLI):
    """A run's command (``fit`` or ``test``) parsed and built as it would run, without running;
    what the command would report as a configuration error raises :class:`ConfigRefused`."""

    def parse_arguments(self, parser: Any, args: Any) -> None:
        parsers = every_parser(self)
        for each in parsers:
            each.exit_on_error = False
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as err:
            raise ConfigRefused(one_line(str(err))) from None
        finally:
            for each in parsers:
                each.exit_on_error = True

    def _exit_with_error(self, err: Exception) -> NoReturn:
        raise ConfigRefused(one_line(f"{type(err).__name__}: {err}")) from None

    def _run_subcommand(self, subcommand: str) -> None:
        """Built and checked: nothing is run."""


@contextmanager
def _quiet() -> Iterator[None]:
    """Lightning's informational lines (seed, devices) left out while runs are checked."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def check_runs(
    spec: ExperimentSpec, keys: Sequence[RunKey], output_dir: Path, extra: Sequence[str]
) -> None:
    """Parse and build, without running, every configuration the runs of ``keys`` will use:
    the ``fit`` of each variant on each of its folds among ``keys`` (seeds change nothing
    that can fail), and the variant's ``test`` under every condition. Raises
    ``ExperimentError`` for the first one its command would refuse (an unknown or ill-typed
    option, a model argument, a fold the split does not have, a missing corpus, a test
    monitor), naming the file, the entry that brings the error (``variants.conv``,
    ``conditions[1] (fast)``, ...) and the error, before any run starts. Writes nothing."""
    _check_test_corpora(spec)
    # the first run of each variant on each fold (and training corpus, cross-corpus)
    first_runs: dict[tuple[str, str | None, int], RunKey] = {}
    for key in keys:
        first_runs.setdefault((key.variant, key.corpus, key.fold), key)
    with _own_argv(), _quiet():
        for variant, corpus in dict.fromkeys((k.variant, k.corpus) for k in keys):
            folds = [key for (v, c, _), key in first_runs.items() if (v, c) == (variant, corpus)]
            for key in folds:
                fit = _check(spec, key, output_dir, extra, None)
                if fit.datamodule.hparams.get("split") == "random" and len(spec.folds) > 1:
                    raise ExperimentError(
                        f"{spec.path}: variant {variant!r} uses data.split 'random', which "
                        "has no folds (every fold would be the same split); give folds: [0] "
                        "and vary the split's seed in the variants or use a "
                        "speaker-independent split"
                    )
            for condition in spec.conditions:
                _check(spec, folds[0], output_dir, extra, condition)


def _check_test_corpora(spec: ExperimentSpec) -> None:
    """Refuse a cross-corpus experiment whose test corpus folder does not exist."""
    if spec.cross_corpus is None:
        return
    for corpus in spec.cross_corpus.test:
        for arg in spec.cross_corpus.test_args(spec.path, corpus):
            root = arg.removeprefix("--data.root=")
            if root != arg and not Path(root).exists():
                raise ExperimentError(
                    f"{spec.path}: cross_corpus.corpora.{corpus}.root: '{root}' does not "
                    f"exist; expected the {corpus} corpus there (a test corpus)"
                )


def _check(
    spec: ExperimentSpec,
    key: RunKey,
    output_dir: Path,
    extra: Sequence[str],
    condition: Condition | None,
) -> _CheckCLI:
    """Build the run's fit (``condition`` None) or its test under ``condition``. On a refusal,
    the entry blamed is the first whose arguments, added to those before it, give the error
    the whole configuration gives (so a base config that needs ``--data.root`` from ``--``
    is not blamed for a typo further on)."""
    entries = spec.fit_entries(key, extra)
    subcommand = "fit"
    if condition is not None:
        # The test of a run reads the fit's saved config; the same arguments give it here.
        entries.append(
            (f"{condition.entry or 'conditions'} ({condition.name})", condition.overrides)
        )
        subcommand = "test"
    folder = run_folder(output_dir, key)

    def build(upto: int) -> _CheckCLI:
        args = [subcommand, *(arg for _, given in entries[:upto] for arg in given)]
        if subcommand == "test":
            args.append("--trainer.logger=false")
        return _CheckCLI(folder, args=args)

    try:
        return build(len(entries))
    except ConfigRefused as err:
        refusal = str(err)
    for upto, (entry, given) in enumerate(entries, 1):
        if not given:
            continue
        try:
            build(upto)
        except ConfigRefused as err:
            if str(err) == refusal:
                raise ExperimentError(f"{spec.path}: {entry}: {refusal}") from None
    raise ExperimentError(f"{spec.path}: {entries[-1][0]}: {refusal}")


def lock_path(folder: Path) -> Path:
    """The lock file of the run in ``folder``: ``<folder>.lock``, beside it (the folder of an
    interrupted run is deleted while its lock is held)."""
    return folder.with_name(folder.name + ".lock")


@contextmanager
def claim_run(folder: Path) -> Iterator[str | None]:
    """Hold the lock of the run in ``folder`` while the block runs, and yield None; or, when a
    live process holds it, yield a description of that process and take nothing.

    The lock is an exclusive ``flock`` on :func:`lock_path`, which the OS releases when the
    holder ends, killed or not. The holder writes ``pid P on HOST since TIME`` into the file
    and deletes it when done; a taker checks, once it holds the lock, that its file is still
    the one at the path (not one its holder deleted meanwhile), else it tries again.
    """
    path = lock_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = open(path, "a+")  # noqa: SIM115 (closed on every path below)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            yield holder
            return
        try:
            same_file = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            break
        handle.close()
    try:
        handle.seek(0)
        handle.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {started}\n")
        handle.flush()
        yield None
    finally:
        path.unlink(missing_ok=True)  # still locked: no other process holds this file
        handle.close()


def run_holder(folder: Path) -> str | None:
    """The live process making the run in ``folder`` (as :func:`claim_run` describes it), or
    None when none is; looks without creating or changing anything."""
    try:
        handle = open(lock_path(folder))  # noqa: SIM115 (closed by the with block)
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "another process"
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None


def run_one(
    spec: ExperimentSpec, key: RunKey, output_dir: str | Path, extra: Sequence[str] = ()
) -> dict[str, Any] | None:
    """Fit one run and test its selected checkpoint under every condition; return its record.

    A recorded run is returned as it is (after checking it was made with the same settings);
    a folder without a complete record is an interrupted run and is deleted first. A run that
    a live process is making (it holds the run's lock, :func:`claim_run`) is left alone: a
    line says so, and None is returned.
    """
    folder = run_folder(output_dir, key)
    # Only the first process of a run claims it: the others (one per device) join its fit.
    with claim_run(folder) if _first_process() else nullcontext() as holder:
        if holder is not None:
            print(
                f"{key.label}: another process is making it "
                f"({holder}); skipped: run the command again once it is done to collect it",
                flush=True,
            )
            return None
        return _run_claimed(spec, key, folder, extra)


def _run_claimed(
    spec: ExperimentSpec, key: RunKey, folder: Path, extra: Sequence[str]
) -> dict[str, Any]:
    fit_args = spec.fit_args(key, extra)
    damage = None
    try:
        record = read_record(folder)
    except DamagedRecord as err:
        record, damage = None, err
    if record is not None:
        if record["fit_args"] != fit_args:
            raise ExperimentError(
                f"{folder} holds a run made with other settings than {spec.path} asks now "
                f"(recorded: {record['fit_args']}; now: {fit_args}); use another "
                "--output_dir, or delete that run folder to redo it"
            )
        return record
    if folder.exists() and _first_process():
        print(f"{key.label}: {damage or 'interrupted before'}; redone", flush=True)
        shutil.rmtree(folder)
    start = time.monotonic()
    with _own_argv():
        record = _fit_and_test(spec, key, folder, fit_args)
    record["seconds"] = round(time.monotonic() - start, 1)
    if record.pop("global_zero"):
        text = json.dumps(record, indent=2).encode()
        atomic_write(folder / RESULT_FILE, lambda f: (f.write(text), _sync(f)))
    return record


def _fit_and_test(
    spec: ExperimentSpec, key: RunKey, folder: Path, fit_args: list[str]
) -> dict[str, Any]:
    fit = _RunCLI(folder, args=fit_args)
    finish_wandb(fit.trainer)
    trainer = fit.trainer
    if trainer.interrupted:  # never record a fit that did not finish
        raise ExperimentError(f"{key.label}: the fit was interrupted")
    checkpoint = trainer.checkpoint_callback
    best = Path(getattr(checkpoint, "best_model_path", "") or "")
    if not best.is_file():
        raise ExperimentError(
            f"{key.label}: the fit saved no checkpoint to test; "
            "the config needs a ModelCheckpoint callback (monitoring a val/ metric)"
        )
    best_epoch = torch.load(best, map_location="cpu", weights_only=True).get("epoch")
    fit_folder = Path(run_dir(trainer))
    cross = spec.cross_corpus
    # (test folder, corpus arguments, corpus recorded) of every test corpus; one without
    # cross-corpus testing.
    targets = (
        [(folder / "test" / t, cross.test_args(spec.path, t), t) for t in cross.test]
        if cross is not None
        else [(folder / "test", [], None)]
    )
    results = []
    for test_folder, corpus_args, test_corpus in targets:
        for condition in spec.conditions:
            test = _RunCLI(
                test_folder / condition.name,
                args=[
                    "test",
                    f"--config={fit_folder / 'config.yaml'}",
                    f"--ckpt_path={best}",
                    "--trainer.logger=false",
                    *corpus_args,
                    *condition.overrides,
                ],
            )
            finish_wandb(test.trainer)
            metrics = test.trainer.callback_metrics
            missing = [m for m in METRICS if f"test/{m}" not in metrics]
            on = f" on {test_corpus}" if test_corpus else ""
            if missing:
                raise ExperimentError(
                    f"test under {condition.name!r}{on} logged no "
                    f"{', '.join('test/' + m for m in missing)}"
                )
            result = {"condition": condition.name}
            if test_corpus is not None:
                result["test_corpus"] = test_corpus
            results.append({**result, **{m: float(metrics[f"test/{m}"]) for m in METRICS}})
    trained_on = {} if key.corpus is None else {"train_corpus": key.corpus}
    return {
        "experiment": spec.description(),
        "variant": key.variant,
        "fold": key.fold,
        "seed": key.seed,
        **trained_on,
        "fit_args": fit_args,
        "epochs": int(trainer.current_epoch),
        "best_epoch": best_epoch,
        "checkpoint": _relative(best, folder),
        "results": results,
        "global_zero": trainer.is_global_zero,
    }


def _first_process() -> bool:
    """Whether this is the first process of the run (a run may start one process per device,
    on one node or several: only the first claims the run and clears an interrupted run's
    folder)."""
    ranks = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")
    return all(int(os.environ.get(name, "0")) == 0 for name in ranks)


def _relative(path: Path, folder: Path) -> str:
    try:
        return str(path.resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(path.resolve())


def _sync(f: Any) -> None:
    f.flush()
    os.fsync(f.fileno())


def result_rows(records: Sequence[tuple[Path, dict[str, Any]]]) -> list[dict[str, Any]]:
    """``results.csv`` rows of ``(run folder, record)`` pairs, one per run and condition."""
    rows = []
    for folder, record in records:
        for result in record["results"]:
            corpora = {}
            if "train_corpus" in record:
                corpora = {
                    "train_corpus": record["train_corpus"],
                    "test_corpus": result["test_corpus"],
                }
            rows.append(
                {
                    "variant": record["variant"],
                    "fold": record["fold"],
                    "seed": record["seed"],
                    **corpora,
                    "condition": result["condition"],
                    **{m: result[m] for m in METRICS},
                    "epochs": record["epochs"],
                    "run_folder": str(folder),
                    "checkpoint": str(folder / record["checkpoint"]),
                }
            )
    return rows


def write_results(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write ``results.csv`` atomically (a reader never sees half a file; nothing is lost)."""
    buffer = io.StringIO()
    columns = list(RESULT_COLUMNS)
    if any("test_corpus" in row for row in rows):
        columns[3:3] = CROSS_CORPUS_COLUMNS
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    data = buffer.getvalue().encode()
    atomic_write(path, lambda f: (f.write(data), _sync(f)))


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``results.csv``, with numbers as numbers."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key in ("fold", "seed", "epochs"):
            row[key] = int(row[key])
        for key in METRICS:
            row[key] = float(row[key])
    return rows


def find_records(output_dir: str | Path) -> tuple[list[tuple[Path, dict[str, Any]]], list[str]]:
    """Every recorded run under ``output_dir`` (searched recursively, wherever the run folders
    were written), in the experiment's variant order, then fold and seed; and one line per
    damaged ``result.json``, left out.

    Raises ``ExperimentError`` when the folder holds no usable record, runs of different
    experiments, or the same run twice.
    """
    root = Path(output_dir)
    if not root.is_dir():
        raise ExperimentError(f"collect: '{root}' is not a folder")
    found, damaged = [], []
    for path in sorted(root.rglob(RESULT_FILE)):
        try:
            found.append((path.parent, read_record(path.parent)))
        except DamagedRecord as err:
            damaged.append(f"left out: {err}")
    if not found:
        raise ExperimentError(
            f"collect: no recorded run under '{root}' (no complete {RESULT_FILE} in any folder "
            "below it" + "".join(f"; {line}" for line in damaged) + ")"
        )
    description = merged_description(root, found)
    seen: dict[tuple, Path] = {}
    for folder, record in found:
        record["experiment"] = description
        key = (record["variant"], record["fold"], record["seed"], record.get("train_corpus"))
        if key in seen:
            raise ExperimentError(
                f"collect: the run {key} is recorded twice: {seen[key]} and {folder}"
            )
        seen[key] = folder
    order = {v: i for i, v in enumerate(description["variants"])}
    trains = {c: i for i, c in enumerate((description.get("cross_corpus") or {}).get("train", []))}
    found.sort(
        key=lambda fr: (
            trains.get(fr[1].get("train_corpus"), 0),
            order.get(fr[1]["variant"], len(order)),
            fr[1]["fold"],
            fr[1]["seed"],
        )
    )
    return found, damaged


def merged_description(root: Path, found: Sequence[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    """The one experiment the runs under ``root`` belong to. Runs recorded before a variant
    was added to the file (or after one was dropped) still belong to it: descriptions may
    differ in their variant lists only, which are merged (the longest list first, in its
    order, then any variant it lacks). Raises ``ExperimentError`` for any other difference
    (name, conditions, reference, cross-corpus layout)."""
    first_folder, first = found[0][0], found[0][1]["experiment"]
    variants: list[str] = []
    for _, record in sorted(found, key=lambda fr: -len(fr[1]["experiment"]["variants"])):
        description = record["experiment"]
        variants += [v for v in description["variants"] if v not in variants]
    for folder, record in found:
        description = record["experiment"]
        if {**description, "variants": variants} != {**first, "variants": variants}:
            raise ExperimentError(
                f"collect: '{root}' holds runs of different experiments: {first_folder} "
                f"({first['name']}) and {folder} ({description['name']}); runs of one "
                "experiment may differ in their variants only"
            )
    return {**first, "variants": variants}


def write_outputs(output_dir: str | Path, records: Sequence[tuple[Path, dict[str, Any]]]) -> dict:
    """From recorded runs: ``results.csv``, ``summary.md``, ``summary.csv``,
    ``paired_differences.csv``, ``condition_differences.csv``, the PNG figures and, when the
    runs log to W&B, a W&B summary run. Returns ``{"rows", "table", "comparisons", "files",
    "wandb_dir", "notes"}``; ``notes`` says what was found missing or damaged on the way (a
    run's checkpoint, whose scores stand all the same; a run config that cannot be read)."""
    from mts_lightning.experiment import figures, stats

    output_dir = Path(output_dir)
    rows = result_rows(records)
    write_results(output_dir / "results.csv", rows)
    description = records[0][1]["experiment"]
    notes, settings = _notes_and_wandb_settings(records)
    if "cross_corpus" in description:
        from mts_lightning.experiment.matrix import write_matrix_outputs

        outputs = write_matrix_outputs(output_dir, rows, description, settings)
        return {**outputs, "notes": notes}
    conditions = [c["name"] for c in description["conditions"]]
    table, comparisons = stats.summarize(rows, description["variants"], conditions)
    changes = stats.condition_changes(
        rows, description["variants"], conditions, description["reference_condition"]
    )
    markdown = stats.summary_markdown(description["name"], table, comparisons, conditions, changes)
    files = [output_dir / "results.csv", output_dir / "summary.md"]
    atomic_write(files[1], lambda f: f.write(markdown.encode()))
    paired_rows = stats.comparison_rows(comparisons)
    for name, content in (
        ("summary.csv", table),
        ("paired_differences.csv", paired_rows),
        ("condition_differences.csv", stats.change_rows(changes)),
    ):
        files.append(output_dir / name)
        write_csv(files[-1], content)
    pngs = figures.write_figures(output_dir, table, description)
    files += pngs
    wandb_dir = None
    if settings is not None:
        wandb_dir = figures.log_to_wandb(
            output_dir, settings, description, table, paired_rows, pngs
        )
    return {
        "rows": rows,
        "table": table,
        "comparisons": comparisons,
        "files": files,
        "wandb_dir": wandb_dir,
        "notes": notes,
    }


def _notes_and_wandb_settings(
    records: Sequence[tuple[Path, dict[str, Any]]],
) -> tuple[list[str], dict[str, Any] | None]:
    """What was found missing or damaged in ``records`` (a run's checkpoint, whose scores
    stand all the same; a run config that cannot be read), and the W&B settings of the first
    run (None: no W&B summary run)."""
    from mts_lightning.experiment import figures

    notes = [
        f"{folder}: its checkpoint {record['checkpoint']} is gone (its scores are kept)"
        for folder, record in records
        if not (folder / record["checkpoint"]).is_file()
    ]
    try:
        settings = figures.wandb_settings(records[0][0])
    except ExperimentError as err:
        settings = None
        notes.append(f"{err}: no W&B summary run")
    return notes, settings


def planned_records(output_dir: Path, plan: Sequence[RunKey]) -> list[tuple[Path, dict[str, Any]]]:
    """The recorded runs of ``plan``, in plan order (a damaged record counts as none)."""
    found = []
    for key in plan:
        folder = run_folder(output_dir, key)
        try:
            record = read_record(folder)
        except DamagedRecord:
            continue
        if record is not None:
            found.append((folder, record))
    return found
