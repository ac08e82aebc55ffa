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
run, deleted and redone from scratch; a run with it is never run again.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import torch
from jsonargparse import Namespace

from mts_lightning.cli import MTSLightningCLI, _finish_wandb
from mts_lightning.data.cache import atomic_write
from mts_lightning.experiment.spec import ExperimentError, ExperimentSpec, RunKey
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


def run_folder(output_dir: str | Path, key: RunKey) -> Path:
    """The folder of one run: ``output_dir/runs/<variant>/fold<F>_seed<S>``."""
    return Path(output_dir) / "runs" / key.variant / key.folder_name


class _RunCLI(MTSLightningCLI):
    """The ordinary CLI with every logger placed in the run's folder: CSV/TensorBoard-style
    loggers at ``runs/<variant>/fold<F>_seed<S>``, W&B runs saved inside it and named after it.

    The argument parser is built once per process and reused: building it costs more than a
    second, paid again by every fit and every test condition otherwise.
    """

    _parsers: ClassVar[dict[bool, tuple]] = {}

    def __init__(self, folder: Path, *args: Any, **kwargs: Any) -> None:
        self.run_folder = folder
        super().__init__(*args, **kwargs)

    def setup_parser(
        self, add_subcommands: bool, main_kwargs: dict[str, Any], subparser_kwargs: dict[str, Any]
    ) -> None:
        cached = self._parsers.get(add_subcommands)
        if cached is None:
            super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)
            cached = (
                self.parser,
                getattr(self, "_subcommand_method_arguments", None),
                getattr(self, "_subcommand_parsers", None),
            )
            self._parsers[add_subcommands] = cached
        self.parser, self._subcommand_method_arguments, self._subcommand_parsers = cached

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
    """The recorded result of the run in ``folder``, or None when it has none."""
    path = folder / RESULT_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def preflight(spec: ExperimentSpec, key: RunKey, output_dir: Path, extra: Sequence[str]) -> None:
    """Build the run's classes without running (configuration errors, a missing corpus, a test
    monitor surface now, before any run starts); check the folders of the test corpora of a
    cross-corpus experiment. Writes nothing."""
    args = spec.fit_args(key, extra)[1:]
    if spec.cross_corpus is not None:
        for corpus in spec.cross_corpus.test:
            for arg in spec.cross_corpus.test_args(spec.path, corpus):
                root = arg.removeprefix("--data.root=")
                if root != arg and not Path(root).exists():
                    raise ExperimentError(
                        f"{spec.path}: cross_corpus.corpora.{corpus}.root: '{root}' does not "
                        f"exist; expected the {corpus} corpus there (a test corpus)"
                    )
    with _own_argv():
        cli = _RunCLI(run_folder(output_dir, key), args=args, run=False)
    if cli.datamodule.hparams.get("split") == "random" and len(spec.folds) > 1:
        raise ExperimentError(
            f"{spec.path}: variant {key.variant!r} uses data.split 'random', which has no folds "
            f"(every fold would be the same split); give folds: [0] and vary the split's seed "
            "in the variants or use a speaker-independent split"
        )


def run_one(
    spec: ExperimentSpec, key: RunKey, output_dir: str | Path, extra: Sequence[str] = ()
) -> dict[str, Any]:
    """Fit one run and test its selected checkpoint under every condition; return its record.

    A recorded run is returned as it is (after checking it was made with the same settings);
    a folder without a record is an interrupted run and is deleted first.
    """
    folder = run_folder(output_dir, key)
    fit_args = spec.fit_args(key, extra)
    record = read_record(folder)
    if record is not None:
        if record.get("fit_args") != fit_args:
            raise ExperimentError(
                f"{folder} holds a run made with other settings than {spec.path} asks now "
                f"(recorded: {record.get('fit_args')}; now: {fit_args}); use another "
                "--output_dir, or delete that run folder to redo it"
            )
        return record
    if folder.exists() and _first_process():
        print(f"{key.label}: interrupted before; redone", flush=True)
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
    _finish_wandb(fit.trainer)
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
            _finish_wandb(test.trainer)
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
    """Whether this is the first process of the run (a run may start one process per device:
    only the first clears an interrupted run's folder)."""
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))) == 0


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


def find_records(output_dir: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every recorded run under ``output_dir`` (searched recursively, wherever the run folders
    were written), in the experiment's variant order, then fold and seed.

    Raises ``ExperimentError`` when the folder holds no run, runs of different experiments, or
    the same run twice.
    """
    root = Path(output_dir)
    if not root.is_dir():
        raise ExperimentError(f"collect: '{root}' is not a folder")
    found = [(p.parent, json.loads(p.read_text())) for p in sorted(root.rglob(RESULT_FILE))]
    if not found:
        raise ExperimentError(
            f"collect: no recorded run under '{root}' (no {RESULT_FILE} in any folder below it)"
        )
    description = found[0][1]["experiment"]
    seen: dict[tuple, Path] = {}
    for folder, record in found:
        if record["experiment"] != description:
            raise ExperimentError(
                f"collect: '{root}' holds runs of different experiments: {found[0][0]} "
                f"({description['name']}) and {folder} ({record['experiment']['name']})"
            )
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
    return found


def write_outputs(output_dir: str | Path, records: Sequence[tuple[Path, dict[str, Any]]]) -> dict:
    """From recorded runs: ``results.csv``, ``summary.md``, ``summary.csv``,
    ``paired_differences.csv``, ``condition_differences.csv``, the PNG figures and, when the runs log to W&B, a W&B summary
    run. Returns ``{"rows", "table", "comparisons", "files"}``."""
    from mts_lightning.experiment import figures, stats

    output_dir = Path(output_dir)
    rows = result_rows(records)
    write_results(output_dir / "results.csv", rows)
    description = records[0][1]["experiment"]
    if "cross_corpus" in description:
        from mts_lightning.experiment.matrix import write_matrix_outputs

        return write_matrix_outputs(output_dir, records, rows, description)
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
        _write_csv(files[-1], content)
    pngs = figures.write_figures(output_dir, table, description)
    files += pngs
    settings = figures.wandb_settings(records[0][0])
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
    }


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    k: ("" if v is None else f"{v:.6f}" if isinstance(v, float) else v)
                    for k, v in row.items()
                }
            )
    data = buffer.getvalue().encode()
    atomic_write(path, lambda f: f.write(data))


def planned_records(output_dir: Path, plan: Sequence[RunKey]) -> list[tuple[Path, dict[str, Any]]]:
    """The recorded runs of ``plan``, in plan order."""
    found = []
    for key in plan:
        folder = run_folder(output_dir, key)
        record = read_record(folder)
        if record is not None:
            found.append((folder, record))
    return found
