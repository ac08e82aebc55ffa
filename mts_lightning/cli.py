"""The ``fit``, ``validate``, ``test`` and ``predict`` commands of ``mts-lightning``: a
``LightningCLI`` over ``EmotionClassifier`` and ``SpectrogramDataModule`` (the command table,
:mod:`mts_lightning.commands`, runs it with the other commands).

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
experiment. Every file of a run goes into one folder (:func:`~mts_lightning.run_dir.run_dir`),
whatever the logger order; the resolved config is saved there as ``config.yaml`` and, with a
W&B logger, into the W&B run's config. ``fit --ckpt_path RUN/checkpoints/last.ckpt`` resumes
a stopped run in its folder (:mod:`mts_lightning.resume`).
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import lightning.pytorch as pl
import torch
import yaml
from jsonargparse import Namespace
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_info

from mts_lightning.callbacks import FitSummary, PredictionCSVWriter
from mts_lightning.callbacks.monitors import refuse_test_monitors
from mts_lightning.data import SpectrogramDataModule, list_audio_files, restored_settings
from mts_lightning.data.corpora import get_corpus, list_corpora
from mts_lightning.data.datamodule import LENGTH_SETTINGS, PADDING_SETTINGS
from mts_lightning.data.errors import DataError
from mts_lightning.data.label_sets import list_label_sets
from mts_lightning.data.settings import (
    grouped_settings,
    reject_flat_arguments,
    reject_flat_settings,
)
from mts_lightning.module import EmotionClassifier
from mts_lightning.resume import logged_rows, relog, run_folder_of
from mts_lightning.run_dir import run_dir

#: Errors that concern the user's data or settings, reported as one line while a subcommand
#: runs (inside ``trainer.fit`` and the like) as they are while the classes are built.
_USER_ERRORS = (DataError, MisconfigurationException)  # BadAudioError is a DataError
#: ``ckpt_path`` values that Lightning resolves itself (not file paths).
_SPECIAL_CKPT_PATHS = ("best", "last", "hpc", "registry")


def one_line(message: str) -> str:
    """``message`` on one line (the parser's messages span several)."""
    return " ".join(str(message).split())


class OneLineErrorParser(LightningArgumentParser):
    """The CLI's argument parser. Its errors (an unknown option, a value of the wrong type, on
    the command line or in a config file) end the command as every configuration error does:
    one line, ``mts-lightning <subcommand>: error: ...``, and exit code 2; the usage is left
    to ``--help``. With ``exit_on_error=False`` they raise ``ArgumentError`` as usual."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:
            super().error(message, ex)
        prog = (getattr(ex, "subcommand_parser", None) or self).prog.replace(" [options]", "")
        sys.stderr.write(f"{prog}: error: {one_line(message)} (options: {prog} --help)\n")
        sys.exit(2)


def given_data_settings(args: Sequence[str]) -> set[str]:
    """The DataModule settings named on a command line (``--data.KEY`` or
    ``--data.KEY=VALUE``, ``KEY`` a dotted path such as ``features.n_mels``): the settings a
    user gave explicitly."""
    given = set()
    for arg in args:
        if isinstance(arg, str) and arg.startswith("--data."):
            given.add(arg[len("--data.") :].split("=", 1)[0])
    return given


def is_given(path: str, given: set[str]) -> bool:
    """Whether the setting at dotted ``path`` was given: itself, or a group holding it."""
    parts = path.split(".")
    return any(".".join(parts[:i]) in given for i in range(1, len(parts) + 1))


def _plain(value: Any) -> Any:
    """``value`` as configs hold it: tuples as lists, namespaces as dicts."""
    if isinstance(value, Namespace):
        value = value.as_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def setting_at(settings: Any, path: str) -> Any:
    """The value at dotted ``path`` of nested namespaces or mappings (None where absent)."""
    for key in path.split("."):
        if settings is None:
            return None
        settings = settings.get(key)
    return settings


def has_setting(settings: Any, path: str) -> bool:
    """Whether nested namespaces or mappings hold a value (None too) at dotted ``path``."""
    *groups, key = path.split(".")
    for name in groups:
        settings = settings.get(name) if settings is not None else None
    return settings is not None and key in settings


def set_setting(settings: Namespace, path: str, value: Any) -> None:
    """Set the value at dotted ``path`` of nested namespaces or mappings, making the mappings
    that are missing."""
    *groups, key = path.split(".")
    for name in groups:
        inner = settings.get(name)
        if inner is None:
            inner = {}
            settings[name] = inner
        settings = inner
    settings[key] = value


def _flat_config_files(args: Sequence[str]) -> None:
    """Refuse the flat data settings of earlier versions in the ``--config`` files and on the
    command line, one line showing the grouped YAML (:mod:`mts_lightning.data.settings`)."""
    corpus = "synthetic"
    for i, arg in enumerate(args):
        path = arg.partition("=")[2] if arg.startswith("--config=") else None
        if arg == "--config" and i + 1 < len(args):
            path = args[i + 1]
        if path is None or not Path(path).is_file():
            continue
        config = yaml.safe_load(Path(path).read_text()) or {}
        data = config.get("data") if isinstance(config, dict) else None
        if isinstance(data, dict):
            corpus = data.get("corpus", corpus)
            reject_flat_settings(data, path)
    for arg in args:
        if arg.startswith("--data.corpus="):
            corpus = arg.partition("=")[2]
    reject_flat_arguments(list(args), corpus)


class SaveRunConfig(SaveConfigCallback):
    """Saves the resolved config as ``config.yaml`` in the run's folder (:func:`run_dir`), and
    into the config of every W&B run of the trainer.

    The run folder is the first logger's versioned folder, so the file never clashes with
    another run's config or with files the loggers write themselves. Written through
    ``save_config``, the hook that Lightning calls on rank zero; its own copy into
    ``trainer.log_dir`` is turned off (``save_to_log_dir=False``), as that folder is not the
    run's folder when a W&B logger comes first.
    """

    def __init__(
        self,
        parser: LightningArgumentParser,
        config: Namespace,
        config_filename: str = "config.yaml",
        overwrite: bool = False,
        multifile: bool = False,
    ) -> None:
        super().__init__(
            parser, config, config_filename, overwrite, multifile, save_to_log_dir=False
        )

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        log_dir = run_dir(trainer)  # not a collective: this hook runs on rank zero only
        os.makedirs(log_dir, exist_ok=True)
        self.parser.save(
            self.config,
            os.path.join(log_dir, self.config_filename),
            skip_none=False,
            overwrite=self.overwrite,
            multifile=self.multifile,
        )
        wandb_loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if not wandb_loggers:
            return
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in wandb_loggers:
            # Nested keys show as `data.corpus`, `model.backbone`, ... in the W&B UI.
            logger.experiment.config.update(config, allow_val_change=True)


class MTSLightningCLI(LightningCLI):
    """``LightningCLI`` for ``EmotionClassifier`` and ``SpectrogramDataModule``.

    On top of Lightning's CLI: data -> model argument links; loggers named after the
    experiment config, and the loggers after a first W&B logger sent into its run folder; the
    resolved config in the run's folder and in W&B; feature settings taken from
    ``--ckpt_path`` for evaluation and prediction; a resumed fit in its own folder;
    configuration errors that only show when the classes are built (a missing corpus folder,
    a model name that does not exist, a missing checkpoint) and data or Lightning
    configuration errors raised while the subcommand runs, reported as one-line CLI errors
    with exit code 2; a :class:`~mts_lightning.callbacks.FitSummary` after ``fit``; and a
    :class:`~mts_lightning.callbacks.PredictionCSVWriter` (``--prediction_writer.output_path``)
    for ``predict``.

    Settings with ``--ckpt_path`` (``validate``, ``test``, ``predict``): the datamodule
    arguments that shape the model's input and classes (:func:`restored_settings`) come from
    the checkpoint unless given on the command line (``--data.KEY``; a run's ``config.yaml``
    holds every setting, so config files do not count as explicit). An explicit value that
    differs from the checkpoint's is honoured when it keeps the model's input contract (the
    length settings for a backbone that declares ``accepts_any_length``, as the zoo's globally
    pooled models do; a fixed-size backbone as long as the input length stays the same), and
    refused with a one-line error naming the setting, the checkpoint's and the given value
    otherwise (feature settings, class options, the label set). ``segment_overlap`` and
    ``test_tempo`` never change the input contract: they always follow the user.

    Another corpus (``--data.corpus`` other than the checkpoint's, with its ``--data.root``):
    the model is evaluated on it with the checkpoint's feature, length and label-set settings,
    and the whole corpus is the test (and validation) split (``split='all'``, unless
    ``--data.split`` is given); its class options are its own. Its classes, read through the
    checkpoint's label set, must be the model's: a checkpoint trained without a label set is
    refused on a corpus with other classes, one line naming both.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("model_class", EmotionClassifier)
        kwargs.setdefault("datamodule_class", SpectrogramDataModule)
        kwargs.setdefault("save_config_callback", SaveRunConfig)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("auto_configure_optimizers", False)  # the model takes `optimizer`
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault("parser_kwargs", {"prog": "mts-lightning"})
        kwargs.setdefault("parser_class", OneLineErrorParser)
        self._resumed_run: Path | None = None
        self._pinned_versions: list[Namespace] = []
        self._given_data: set[str] = set()
        #: Explicit length settings that differ from the checkpoint's: key -> (saved, given).
        self._length_overrides: dict[str, tuple[Any, Any]] = {}
        self._saved_input_shape: list[int] | None = None
        #: The checkpoint's class names and data settings, for cross-corpus evaluation.
        self._saved_classes: list[str] | None = None
        self._saved_data: dict[str, Any] = {}
        try:
            super().__init__(*args, **kwargs)
        except _USER_ERRORS as err:
            self._exit_with_error(err)

    def _exit_with_error(self, err: Exception, subcommand: str | None = None) -> None:
        """Report ``err`` as ``mts-lightning <subcommand>: error: ...`` and exit with code 2.

        The parser's own errors print the whole usage first; these concern values that parsed
        fine, so the message alone says more.
        """
        config = getattr(self, "config", None)
        subcommand = (
            subcommand
            or getattr(self, "subcommand", None)
            or (config.get("subcommand") if isinstance(config, Namespace) else None)
        )
        prog = " ".join(filter(None, ("mts-lightning", subcommand)))
        sys.stderr.write(f"{prog}: error: {type(err).__name__}: {err}\n")
        sys.exit(2)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Computed when the datamodule is built (from the corpus and the feature settings).
        for key in ("num_classes", "class_names", "input_shape"):
            parser.link_arguments(f"data.{key}", f"model.{key}", apply_on="instantiate")
        parser.link_arguments("data.label_set_info", "model.label_set_info", apply_on="instantiate")
        parser.add_lightning_class_args(PredictionCSVWriter, "prediction_writer")

    # ------------------------------------------------------------------ before building
    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        command_line = sys.argv[1:] if args is None else args
        if isinstance(command_line, (list, tuple)):
            self._given_data = given_data_settings(command_line)
            try:
                _flat_config_files([str(a) for a in command_line])
            except ValueError as err:
                named = [a for a in command_line if not str(a).startswith("-")][:1]
                self._exit_with_error(err, str(named[0]) if named else None)
        super().parse_arguments(parser, args)

    def _restore_feature_args(self) -> None:
        """Take the datamodule's input settings from the checkpoint (evaluation, predict),
        except those given explicitly (see the class docstring)."""
        subcommand = self.config.get("subcommand")
        if subcommand in (None, "fit"):
            return
        ckpt_path = self.config[subcommand].get("ckpt_path")
        if not ckpt_path or not Path(ckpt_path).is_file():
            return
        ckpt = torch.load(ckpt_path, weights_only=True, map_location="cpu")
        # A checkpoint of an earlier version holds the flat settings.
        saved = grouped_settings(ckpt.get("datamodule_hyper_parameters") or {})
        model_hparams = ckpt.get("hyper_parameters") or {}
        self._saved_input_shape = model_hparams.get("input_shape")
        self._saved_classes = model_hparams.get("class_names")
        self._saved_data = dict(saved)
        data = self.config[subcommand].data
        # Another corpus than the checkpoint's: its classes are checked once it is built.
        other_corpus = "corpus" in self._given_data and data.get("corpus") != saved.get("corpus")
        class_options = {
            f"corpus_options.{o}" for n in list_corpora() for o in get_corpus(n).class_options
        }
        # The datamodule settings that shape the model's input and classes.
        for key in restored_settings():
            if not has_setting(saved, key) or (other_corpus and key in class_options):
                continue  # another corpus's option, or the evaluated corpus's own
            value, given = _plain(setting_at(saved, key)), _plain(setting_at(data, key))
            if value == given:
                continue
            if not is_given(key, self._given_data):
                rank_zero_info(f"data.{key}: {value!r} from the checkpoint (config: {given!r})")
                set_setting(data, key, value)
            elif other_corpus and key == "corpus":
                rank_zero_info(
                    f"data.{key}: {given!r} as given (the checkpoint's: {value!r}): a model "
                    f"trained on {saved.get('corpus')} evaluated on {data.get('corpus')}"
                )
            elif key in LENGTH_SETTINGS:
                self._length_overrides[key] = (value, given)  # checked once the model exists
            elif key in PADDING_SETTINGS:
                rank_zero_info(f"data.{key}: {given!r} as given (the checkpoint's: {value!r})")
            else:
                raise ValueError(
                    f"data.{key}: the checkpoint's model was trained with {value!r}, given "
                    f"{given!r}; it changes the model's input or classes (leave --data.{key} "
                    "out to use the checkpoint's value)"
                )
        if other_corpus and "corpus_options" not in self._given_data:
            # The config's options are the checkpoint's corpus's: only those given stay.
            given = {
                k.partition(".")[2] for k in self._given_data if k.startswith("corpus_options.")
            }
            options = data.get("corpus_options") or {}
            data["corpus_options"] = {k: v for k, v in options.items() if k in given} or None
        if other_corpus and "split" not in self._given_data and data.get("split") != "all":
            rank_zero_info(
                f"data.split: 'all' (config: {data.get('split')!r}): every clip of "
                f"{data.get('corpus')} is a test clip, its speakers unseen in training on "
                f"{saved.get('corpus')}"
            )
            data["split"] = "all"

    def before_instantiate_classes(self) -> None:
        try:
            self._restore_feature_args()
        except ValueError as err:
            self._exit_with_error(err)
        self._name_loggers()
        self._resume_in_run_folder()
        self._share_wandb_run_folder()

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
        self._pin_version(init_args, run.name)
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

    def _share_wandb_run_folder(self) -> None:
        """With a W&B logger first, the run's folder is ``save_dir/project/<run id>`` (where
        ``ModelCheckpoint`` puts ``checkpoints/``): fix the id now and send the loggers listed
        after it that write files (CSV, TensorBoard) into that folder too."""
        config = self.config.get(str(self.subcommand), self.config)
        loggers = config.trainer.get("logger")
        if not isinstance(loggers, list) or len(loggers) < 2:
            return
        first, others = loggers[0], loggers[1:]
        if not (isinstance(first, Namespace) and str(first.class_path).endswith("WandbLogger")):
            return
        wandb_args = first.init_args
        if wandb_args.get("version") is None and wandb_args.get("id") is None:
            # A W&B run id; `secrets` leaves the seeded generators alone.
            self._pin_version(wandb_args, secrets.token_hex(4))
        save_dir = wandb_args.get("save_dir") or wandb_args.get("dir") or "."
        project = wandb_args.get("project") or os.environ.get("WANDB_PROJECT", "lightning_logs")
        for logger in others:
            if not (isinstance(logger, Namespace) and "init_args" in logger):
                continue
            init_args = logger.init_args
            keys = ("save_dir", "name", "version")
            if all(k in init_args for k in keys) and init_args.version is None:
                init_args.save_dir = save_dir
                init_args.name = project
                self._pin_version(init_args, wandb_args.get("version") or wandb_args.get("id"))

    def _pin_version(self, init_args: Namespace, version: str) -> None:
        """Give a logger its run folder's version for this command only: the saved
        ``config.yaml`` keeps ``version: null``, so a later command with it starts a new run."""
        init_args.version = version
        self._pinned_versions.append(init_args)

    def after_instantiate_classes(self) -> None:
        for init_args in self._pinned_versions:
            init_args.version = None

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
            self._check_length_overrides()
            self._check_classes()
            self._check_inputs()
        except (ValueError, OSError) as err:
            self._exit_with_error(err)

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        self.fit_summary = FitSummary()
        trainer.callbacks.append(self.fit_summary)
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

    def _check_length_overrides(self) -> None:
        """Refuse explicit length settings that change the input length of a backbone built
        for one length (one that does not declare ``accepts_any_length``)."""
        if not self._length_overrides:
            return
        backbone = getattr(self.model, "backbone", self.model)
        if getattr(backbone, "accepts_any_length", False):
            return
        datamodule = self.datamodule
        if (
            self._saved_input_shape is not None
            and isinstance(datamodule, SpectrogramDataModule)
            and list(datamodule.input_shape) == list(self._saved_input_shape)
        ):
            return  # another setting, the same input length (e.g. segments of the trained length)
        key, (value, given) = next(iter(self._length_overrides.items()))
        raise ValueError(
            f"data.{key}: the checkpoint's model ({type(backbone).__name__}) was trained with "
            f"{value!r}, given {given!r}; it takes inputs of one length only (it does not "
            f"declare accepts_any_length), so leave --data.{key} out"
        )

    def _check_classes(self) -> None:
        """Refuse to evaluate a checkpoint on a corpus whose classes are not the model's (a
        corpus other than the training one, read without the checkpoint's label set)."""
        datamodule = self.datamodule
        saved = self._saved_classes
        if saved is None or not isinstance(datamodule, SpectrogramDataModule):
            return
        if list(datamodule.class_names) == list(saved):
            return
        trained_on = self._saved_data.get("corpus")
        label_set = self._saved_data.get("label_set")
        how = (
            f"with label set {label_set if isinstance(label_set, str) else 'inline'}"
            if label_set is not None
            else "without a label set"
        )
        raise ValueError(
            f"data.corpus: the checkpoint's model was trained on {trained_on} {how}, with the "
            f"classes {', '.join(saved)}; {datamodule.corpus} has the classes "
            f"{', '.join(datamodule.class_names)}; to test across corpora, train with "
            f"--data.label_set (one of {', '.join(list_label_sets())}, or an inline mapping)"
        )

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


#: Where ``LightningCLI.setup_parser`` leaves the parsers it builds: the main parser, the
#: arguments of each subcommand's trainer method and the subcommand parsers. Lightning has no
#: public accessor for the last two; :func:`parser_state` is the one place that reads them
#: (tests/cli/test_cli.py fails when Lightning renames them).
_LIGHTNING_PARSER_ATTRIBUTES = ("parser", "_subcommand_method_arguments", "_subcommand_parsers")


def parser_state(cli: LightningCLI) -> dict[str, Any]:
    """What ``cli.setup_parser`` built, by attribute name: set them on another CLI of the same
    class (``setattr``) to reuse the parsers instead of building them again.

    Raises ``RuntimeError`` naming the Lightning version when one of them is missing.
    """
    missing = [name for name in _LIGHTNING_PARSER_ATTRIBUTES if not hasattr(cli, name)]
    if missing:
        raise RuntimeError(
            f"lightning {pl.__version__}: LightningCLI.setup_parser no longer sets "
            f"{', '.join(missing)}; mts_lightning.cli.parser_state must follow it"
        )
    return {name: getattr(cli, name) for name in _LIGHTNING_PARSER_ATTRIBUTES}


def every_parser(cli: LightningCLI) -> list[LightningArgumentParser]:
    """The main parser of ``cli`` and its subcommand parsers (fit, validate, test, predict)."""
    state = parser_state(cli)
    return [state["parser"], *state["_subcommand_parsers"].values()]


def finish_wandb(trainer: pl.Trainer | None) -> None:
    """End the W&B run of ``trainer``, so its files are complete when the command returns."""
    if trainer is not None and any(isinstance(lg, WandbLogger) for lg in trainer.loggers):
        import wandb

        wandb.finish()


def cli_main(args: list[str] | None = None) -> MTSLightningCLI:
    """Run the command line in-process and return the CLI object (trainer, model, data).

    Args:
        args: command-line arguments, e.g. ``["fit", "--config", "configs/synthetic.yaml"]``
            (default: ``sys.argv[1:]``).
    """
    cli = MTSLightningCLI(args=args)
    finish_wandb(getattr(cli, "trainer", None))
    return cli
