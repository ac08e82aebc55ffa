"""The ``mts-lightning`` command line: a ``LightningCLI`` over ``EmotionClassifier`` and
``SpectrogramDataModule`` with the subcommands ``fit``, ``validate``, ``test`` and ``predict``.

Every experiment is a YAML file in ``configs/``::

    mts-lightning fit --config configs/synthetic.yaml
    mts-lightning fit --config configs/synthetic.yaml --config configs/loggers/wandb.yaml
    mts-lightning test --config lightning_logs/synthetic/version_0/config.yaml \\
        --ckpt_path lightning_logs/synthetic/version_0/checkpoints/best.ckpt
    mts-lightning predict --config lightning_logs/synthetic/version_0/config.yaml \\
        --ckpt_path .../best.ckpt --data.predict_paths '[clips/, other.wav]'

``num_classes``, ``class_names`` and the input shape flow from the datamodule to the model
(argument links), so a config names the corpus once. Loggers whose ``name`` is left ``null``
are named after the experiment config (``configs/ravdess/paper_mts.yaml`` ->
``ravdess_paper_mts``), so the logger configs in ``configs/loggers/`` compose with any
experiment. The resolved config of every run is saved as ``config.yaml`` in the run's folder
(next to ``checkpoints/``) and, with a W&B logger, into the W&B run's config.
"""

from __future__ import annotations

import csv
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import yaml
from jsonargparse import Namespace
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import BasePredictionWriter, Callback, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from mts_lightning.data import SpectrogramDataModule, list_audio_files, restored_settings
from mts_lightning.data.errors import DataError
from mts_lightning.experiment.monitors import refuse_test_monitors
from mts_lightning.module import EmotionClassifier
from mts_lightning.resume import logged_rows, relog, run_folder_of
from mts_lightning.run_dir import run_dir

#: Errors that concern the user's data or settings, reported as one line while a subcommand
#: runs (inside ``trainer.fit`` and the like) as they are while the classes are built.
_USER_ERRORS = (DataError, MisconfigurationException)  # BadAudioError is a DataError
#: ``ckpt_path`` values that Lightning resolves itself (not file paths).
_SPECIAL_CKPT_PATHS = ("best", "last", "hpc", "registry")


class SaveRunConfig(SaveConfigCallback):
    """Saves the resolved config as ``config.yaml`` in the run's folder (:func:`run_dir`), and
    into the config of every W&B run of the trainer.

    The run folder is the first logger's versioned folder, so the file never clashes with
    another run's config or with files the loggers write themselves.
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        if self.save_to_log_dir:
            log_dir = trainer.strategy.broadcast(run_dir(trainer))
            if trainer.is_global_zero:
                os.makedirs(log_dir, exist_ok=True)
                self.parser.save(
                    self.config,
                    os.path.join(log_dir, self.config_filename),
                    skip_none=False,
                    overwrite=self.overwrite,
                    multifile=self.multifile,
                )
        if trainer.is_global_zero:
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        wandb_loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if not wandb_loggers:
            return
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in wandb_loggers:
            # Nested keys show as `data.corpus`, `model.backbone`, ... in the W&B UI.
            logger.experiment.config.update(config, allow_val_change=True)


class PredictionCSVWriter(BasePredictionWriter):
    """Writes the predictions of ``predict`` to a CSV file, one row per audio file.

    Columns: ``file``, ``predicted_emotion`` and one ``prob_<class>`` column per class, in
    the order of the files given to the datamodule. Works with batches of
    ``EmotionClassifier.predict_step`` (``{"probabilities", "class_names", "paths"}``).

    Args:
        output_path: the CSV file; by default ``predictions.csv`` in the run's folder.
        print_path: print where the file went (and how many rows) when done.
    """

    def __init__(self, output_path: str | None = None, print_path: bool = True) -> None:
        super().__init__(write_interval="batch")
        self.output_path = output_path
        self.print_path = print_path
        self.written_path: str | None = None
        self._rows: list[tuple[int, str, list[float]]] = []
        self._class_names: list[str] = []

    def on_predict_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._rows = []

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not isinstance(prediction, dict) or "probabilities" not in prediction:
            raise TypeError(
                "PredictionCSVWriter expects predict_step to return a dict with 'probabilities' "
                f"(as EmotionClassifier does), got {type(prediction).__name__}"
            )
        probabilities = prediction["probabilities"].detach().float().cpu().tolist()
        self._class_names = list(prediction.get("class_names") or [])
        if batch_indices is None:  # no sampler indices: this rank's running count
            start = len(self._rows)
            batch_indices = list(range(start, start + len(probabilities)))
        paths = prediction.get("paths")
        if paths is None:  # unnamed inputs: name them by their place in the dataset
            paths = [f"item_{i}" for i in batch_indices]
        self._rows += list(zip(batch_indices, map(str, paths), probabilities, strict=True))

    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        rows = self._rows
        if trainer.world_size > 1 and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, rows)
            rows = [row for part in gathered for row in part]
        path = self.output_path or os.path.join(run_dir(trainer), "predictions.csv")
        path = trainer.strategy.broadcast(path)
        if trainer.is_global_zero:
            # Distributed samplers interleave the items: restore the dataset's order.
            self._write(path, sorted(rows, key=lambda row: row[0]))
        self.written_path = path

    def _write(self, path: str, rows: list[tuple[int, str, list[float]]]) -> None:
        names = self._class_names or [str(i) for i in range(len(rows[0][2]) if rows else 0)]
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "predicted_emotion", *(f"prob_{n}" for n in names)])
            for _, file, probs in rows:
                best = max(range(len(probs)), key=probs.__getitem__)
                writer.writerow([file, names[best], *(f"{p:.6f}" for p in probs)])
        if self.print_path:
            print(f"Wrote {len(rows)} predictions to {path}", flush=True)


class _ValidationHistory(Callback):
    """Keeps the validation metrics of every (non-sanity) validation run, for the summary."""

    def __init__(self) -> None:
        self.epochs: dict[int, dict[str, float]] = {}
        self.start_time = time.monotonic()

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start_time = time.monotonic()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        self.epochs[trainer.current_epoch] = {
            k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")
        }


class MTSLightningCLI(LightningCLI):
    """``LightningCLI`` for ``EmotionClassifier`` and ``SpectrogramDataModule``.

    On top of Lightning's CLI: data -> model argument links; loggers named after the
    experiment config; the resolved config in the run's folder and in W&B; feature settings
    taken from ``--ckpt_path`` for evaluation and prediction; configuration errors that only
    show when the classes are built (a missing corpus folder, a model name that does not
    exist, a missing checkpoint) reported as one-line CLI errors with exit code 2; a summary
    after ``fit`` (validation WA/UA of the best checkpoint, where the files are); and a
    :class:`PredictionCSVWriter` (``--prediction_writer.output_path``) for ``predict``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("model_class", EmotionClassifier)
        kwargs.setdefault("datamodule_class", SpectrogramDataModule)
        kwargs.setdefault("save_config_callback", SaveRunConfig)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("auto_configure_optimizers", False)  # the model takes `optimizer`
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault("parser_kwargs", {"prog": "mts-lightning"})
        self._resumed_run: Path | None = None
        try:
            super().__init__(*args, **kwargs)
        except _USER_ERRORS as err:
            self._exit_with_error(err)

    def _exit_with_error(self, err: Exception) -> None:
        """Report ``err`` as ``mts-lightning <subcommand>: error: ...`` and exit with code 2.

        The parser's own errors print the whole usage first; these concern values that parsed
        fine, so the message alone says more.
        """
        prog = " ".join(filter(None, ("mts-lightning", getattr(self, "subcommand", None))))
        sys.stderr.write(f"{prog}: error: {type(err).__name__}: {err}\n")
        sys.exit(2)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Computed when the datamodule is built (from the corpus and the feature settings).
        for key in ("num_classes", "class_names", "input_shape"):
            parser.link_arguments(f"data.{key}", f"model.{key}", apply_on="instantiate")
        parser.add_lightning_class_args(PredictionCSVWriter, "prediction_writer")

    # ------------------------------------------------------------------ before building
    def _parse_ckpt_path(self) -> None:
        super()._parse_ckpt_path()
        self._restore_feature_args()

    def _restore_feature_args(self) -> None:
        """Take the datamodule's feature settings from the checkpoint (evaluation, predict)."""
        subcommand = self.config.get("subcommand")
        if subcommand in (None, "fit"):
            return
        ckpt_path = self.config[subcommand].get("ckpt_path")
        if not ckpt_path or not Path(ckpt_path).is_file():
            return
        ckpt = torch.load(ckpt_path, weights_only=True, map_location="cpu")
        saved = ckpt.get("datamodule_hyper_parameters") or {}
        data = self.config[subcommand].data
        # The datamodule arguments that shape the model's input and classes.
        for key in restored_settings():
            if key in saved and data.get(key) != saved[key]:
                value = saved[key]
                rank_zero_info(
                    f"data.{key}: {value!r} from the checkpoint (given: {data.get(key)!r})"
                )
                data[key] = list(value) if isinstance(value, tuple) else value

    def before_instantiate_classes(self) -> None:
        self._name_loggers()
        self._resume_in_run_folder()

    def _resume_in_run_folder(self) -> None:
        """``fit --ckpt_path RUN/checkpoints/...``: the first logger writes into ``RUN`` again
        (see :mod:`mts_lightning.resume`), when it would write beside ``RUN`` anyway."""
        if self.subcommand != "fit":
            return
        config = self.config.fit
        run = run_folder_of(config.ckpt_path) if config.get("ckpt_path") else None
        loggers = config.trainer.get("logger")
        first = loggers[0] if isinstance(loggers, list) and loggers else loggers
        if run is None or not (isinstance(first, Namespace) and "init_args" in first):
            return
        init_args = first.init_args
        if "version" not in init_args or init_args.version is not None:
            return
        save_dir = init_args.get("save_dir") or config.trainer.get("default_root_dir") or "."
        if Path(save_dir, str(init_args.get("name") or "")).resolve() != run.parent.resolve():
            return
        init_args.version = run.name
        self._resumed_run = run

    def _name_loggers(self) -> None:
        """Give loggers configured with ``name: null`` the experiment's name."""
        config = self.config.get(str(self.subcommand), self.config)
        loggers = config.trainer.get("logger")
        if not isinstance(loggers, list):
            loggers = [loggers]
        name = self._experiment_name(config)
        for logger in loggers:
            if isinstance(logger, Namespace) and "init_args" in logger:
                init_args = logger.init_args
                if "name" in init_args and init_args.name is None:
                    init_args.name = name

    @staticmethod
    def _experiment_name(config: Namespace) -> str:
        """The first config file that is not a logger config, named by its place under
        ``configs/``: ``configs/ravdess/paper_mts.yaml`` -> ``ravdess_paper_mts``, other files by
        their stem; ``default`` without a config file. (A run's saved ``config.yaml`` already
        holds its logger's name.)"""
        paths = [Path(os.fspath(p)) for p in (config.get("config") or []) if p is not None]
        experiments = [p for p in paths if "loggers" not in p.parts]
        if not experiments:
            return "default"
        path = experiments[0]
        parts = path.with_suffix("").parts
        if "configs" in parts[:-1]:
            below = parts[len(parts) - parts[::-1].index("configs") :]
            return "_".join(below)
        return path.stem

    # ------------------------------------------------------------------ building
    def instantiate_classes(self) -> None:
        """Build the classes; report configuration errors found on the way as CLI errors."""
        try:
            super().instantiate_classes()
            self._check_inputs()
        except (ValueError, OSError) as err:
            self._exit_with_error(err)

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        self.validation_history = _ValidationHistory()
        trainer.callbacks.append(self.validation_history)
        if self._resumed_run is not None:
            self._keep_logged_rows(trainer, self._resumed_run)
        return trainer

    def _keep_logged_rows(self, trainer: pl.Trainer, run: Path) -> None:
        """Log again what the resumed run logged into ``run/metrics.csv`` up to its checkpoint."""
        checkpoint = torch.load(self.config.fit.ckpt_path, weights_only=True, map_location="cpu")
        for logger in trainer.loggers:
            if isinstance(logger, CSVLogger) and Path(logger.log_dir).resolve() == run.resolve():
                rows = logged_rows(Path(logger.log_dir, "metrics.csv"), checkpoint["epoch"])
                relog(logger, rows)

    def _check_inputs(self) -> None:
        """Find what would fail deep inside the run: the corpus, the split, the checkpoint,
        the files to predict."""
        subcommand = self.subcommand
        config = self.config[subcommand] if subcommand else self.config
        ckpt_path = config.get("ckpt_path")
        if ckpt_path and ckpt_path not in _SPECIAL_CKPT_PATHS and not Path(ckpt_path).is_file():
            raise FileNotFoundError(f"ckpt_path: '{ckpt_path}' is not a file")
        if subcommand in (None, "fit"):
            refuse_test_monitors(self.trainer.callbacks, self.model)
        datamodule = self.datamodule
        if not isinstance(datamodule, SpectrogramDataModule):
            return
        if subcommand == "predict":
            if not ckpt_path:
                raise ValueError("predict needs --ckpt_path: the checkpoint of a trained model")
            if not datamodule.predict_paths:
                raise ValueError(
                    "predict needs --data.predict_paths: a list of audio files and/or folders, "
                    "e.g. --data.predict_paths '[clips/, extra.wav]'"
                )
            list_audio_files(datamodule.predict_paths)
        elif subcommand in ("fit", "validate", "test"):
            datamodule.load_corpus()  # scans the folder: fails now if it is missing or empty
            datamodule.make_split()  # fails now if the split cannot be made

    # ------------------------------------------------------------------ after running
    def after_fit(self) -> None:
        self._print_fit_summary()

    @rank_zero_only
    def _print_fit_summary(self) -> None:
        trainer = self.trainer
        history = self.validation_history.epochs
        folder = run_dir(trainer)
        lines = [
            "",
            f"Training finished: {trainer.current_epoch} epochs, {trainer.global_step} steps, "
            f"{time.monotonic() - self.validation_history.start_time:.0f} s.",
        ]
        checkpoint = trainer.checkpoint_callback
        best_path = checkpoint.best_model_path if isinstance(checkpoint, ModelCheckpoint) else ""
        best_epoch = None
        if best_path and os.path.isfile(best_path):
            best_epoch = torch.load(best_path, map_location="cpu", weights_only=True).get("epoch")
            score = checkpoint.best_model_score
            monitor = f", {checkpoint.monitor} {float(score):.3f}" if score is not None else ""
            lines.append(f"  best checkpoint:  {best_path} (epoch {best_epoch}{monitor})")
        if history:
            last_epoch = max(history)
            shown = [("best", best_epoch)] if best_epoch in history else []
            shown.append(("last", last_epoch))
            for label, epoch in shown:
                metrics = history[epoch]
                lines.append(
                    f"  validation ({label} epoch {epoch}): "
                    f"WA {metrics.get('val/WA', float('nan')):.3f}  "
                    f"UA {metrics.get('val/UA', float('nan')):.3f}  "
                    f"macro-F1 {metrics.get('val/macro_F1', float('nan')):.3f}"
                )
        lines.append(f"  run folder (logs): {folder}")
        files = [
            os.path.join(folder, name)
            for name in ("config.yaml", "metrics.csv", "split_speakers.json", "stretch_usage.png")
        ]
        matrices = sorted(Path(folder, "confusion_matrix").glob("val_epoch*.png"))
        if best_epoch is not None:
            matrices = [
                m for m in matrices if m.name == f"val_epoch{best_epoch:03d}.png"
            ] or matrices
        files += [os.fspath(m) for m in matrices[-1:]]
        for path in files:
            if os.path.isfile(path):
                lines.append(f"    {path}")
        if best_path:
            config_path = os.path.join(folder, "config.yaml")
            lines.append(
                f"  test it:  mts-lightning test --config {config_path} --ckpt_path {best_path}"
            )
        print("\n".join(lines), flush=True)


def _finish_wandb(trainer: pl.Trainer | None) -> None:
    """End the W&B runs of ``trainer``, so their files are complete when the command returns."""
    if trainer is None:
        return
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish()


def cli_main(args: list[str] | None = None) -> MTSLightningCLI:
    """Run the command line in-process and return the CLI object (trainer, model, data).

    Args:
        args: command-line arguments, e.g. ``["fit", "--config", "configs/synthetic.yaml"]``
            (default: ``sys.argv[1:]``).
    """
    cli = MTSLightningCLI(args=args)
    _finish_wandb(getattr(cli, "trainer", None))
    return cli


def main(args: list[str] | None = None) -> None:
    """Entry point of ``mts-lightning`` and ``python -m mts_lightning``."""
    args = sys.argv[1:] if args is None else list(args)
    if args[:1] == ["experiment"]:
        from mts_lightning.experiment.command import main as experiment_main

        experiment_main(args[1:])
        return
    cli_main(args)


if __name__ == "__main__":
    main()
