"""An experiment file: base configs, named variants, folds, seeds and test conditions.

```yaml
name: synthetic_conv_vs_mts          # optional; default: the file's stem
configs: [../synthetic.yaml]         # base config(s), relative to this file
overrides: []                        # CLI overrides for every variant
variants:                            # name -> CLI overrides of the fit
  mts: []
  conv: ["--model.backbone_kwargs={conv_type: conv}"]
folds: [0, 1, 2, 3, 4]               # values of --data.fold
seeds: [0, 1, 2]                     # values of --seed_everything
conditions:                          # tests of each run's selected checkpoint
  - name: seen_speeds
    overrides: ["--data.corpus_options.test_stretch=[0.6, 1.6]"]
    x: 1.0                           # optional place on the figures' x axis
tempo_sweep: [0.7, 1.0, 1.4]         # adds conditions tempo_0.7 ... (--data.test_tempo)
reference_condition: seen_speeds     # of the bar chart; default tempo 1.0 or the first
x_label: test time stretch           # of the condition figure
slurm: {timeout_min: 60}             # submitit parameters for --launcher slurm
cross_corpus:                        # optional: train on corpora, test each run on corpora
  label_set: shared4                 # --data.label_set of every fit (names or inline)
  corpora:                           # name -> its folder (relative to this file, or with
    ravdess: {root: "${MTS_CORPORA}/RAVDESS"}   # environment variables) and fit overrides
    emodb: {root: "${MTS_CORPORA}/EmoDB", overrides: ["--data.split=paper"]}
  train: [ravdess, emodb]            # default: every corpus listed
  test: [ravdess, emodb]             # default: every corpus listed
  balance_test: true                 # the same number of clips per class in each test
  normalise_with: train              # or test: each test corpus's own statistics
```

With ``cross_corpus`` every (train corpus, variant, fold, seed) is one run, tested under every
condition on every test corpus: on its own test split for its training corpus, on the whole
corpus for the others (:class:`CrossCorpus`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mts_lightning.data.tempo import check_tempo

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_KEYS = {
    "name",
    "configs",
    "overrides",
    "variants",
    "folds",
    "seeds",
    "conditions",
    "tempo_sweep",
    "reference_condition",
    "x_label",
    "slurm",
    "cross_corpus",
}
_CROSS_KEYS = {"label_set", "corpora", "train", "test", "balance_test", "normalise_with"}


class ExperimentError(ValueError):
    """An experiment file, or an output folder, that cannot give what was asked."""


@dataclass(frozen=True)
class Condition:
    """One test of every run's selected checkpoint: CLI overrides of ``mts-lightning test``.

    ``x`` places it on the x axis of the condition figure (a tempo, a stretch), when given;
    ``entry`` names where the experiment file gives it (``conditions[0]``, ``tempo_sweep[2]``).
    """

    name: str
    overrides: tuple[str, ...] = ()
    x: float | None = None
    entry: str = field(default="", compare=False)


@dataclass(frozen=True, order=True)
class RunKey:
    """One run of the plan: a variant on a fold with a seed (and, in a cross-corpus
    experiment, the corpus it trains on)."""

    variant: str
    fold: int
    seed: int
    corpus: str | None = None

    @property
    def folder_name(self) -> str:
        """Folder of the run under ``output_dir/runs/<variant>/``."""
        trained_on = f"{self.corpus}_" if self.corpus else ""
        return f"{trained_on}fold{self.fold}_seed{self.seed}"

    @property
    def label(self) -> str:
        """The run in messages: ``mts fold 0 seed 1`` (``ravdess mts fold 0 seed 1``)."""
        trained_on = f"{self.corpus} " if self.corpus else ""
        return f"{trained_on}{self.variant} fold {self.fold} seed {self.seed}"


@dataclass(frozen=True)
class CorpusEntry:
    """A corpus of a cross-corpus experiment: its folder (``None`` for the embedded one; may
    hold ``${VARIABLE}``s, expanded when a run starts) and the overrides of fits on it."""

    root: str | None = None
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class CrossCorpus:
    """The ``cross_corpus`` block of an experiment file (see the module docstring)."""

    label_set: str | dict[str, list[str]] | None
    corpora: dict[str, CorpusEntry]
    train: tuple[str, ...]
    test: tuple[str, ...]
    balance_test: bool = False
    normalise_with: str = "train"

    def root_args(self, path: Path, corpus: str) -> list[str]:
        """``--data.corpus`` and ``--data.root`` of ``corpus``, its root resolved against
        the experiment file ``path`` after expanding environment variables."""
        args = [f"--data.corpus={corpus}"]
        root = self.corpora[corpus].root
        if root is None:
            return args
        expanded = os.path.expandvars(os.path.expanduser(root))
        unset = re.findall(r"\$\{?(\w+)", expanded)
        if unset:
            raise ExperimentError(
                f"{path}: cross_corpus.corpora.{corpus}.root {root!r} names the environment "
                f"variable(s) {', '.join(unset)}, which are not set; set them to the folder "
                "holding the corpora"
            )
        resolved = Path(expanded) if Path(expanded).is_absolute() else path.parent / expanded
        return [*args, f"--data.root={resolved}"]

    def fit_args(self, path: Path, corpus: str) -> list[str]:
        """What a fit on ``corpus`` adds: corpus, root, label set and the corpus's overrides."""
        args = self.root_args(path, corpus)
        if self.label_set is not None:
            value = self.label_set
            args.append(
                f"--data.label_set={value if isinstance(value, str) else json.dumps(value)}"
            )
        return [*args, *self.corpora[corpus].overrides]

    def test_args(self, path: Path, corpus: str) -> list[str]:
        """What a test on ``corpus`` adds: corpus, root, balancing and normalisation."""
        args = self.root_args(path, corpus)
        if self.balance_test:
            args.append("--data.balance_test=true")
        if self.normalise_with != "train":
            args.append(f"--data.normalise_with={self.normalise_with}")
        return args


@dataclass(frozen=True)
class ExperimentSpec:
    """A parsed experiment file (see the module docstring)."""

    path: Path
    name: str
    configs: tuple[Path, ...]
    overrides: tuple[str, ...]
    variants: dict[str, tuple[str, ...]]
    folds: tuple[int, ...]
    seeds: tuple[int, ...]
    conditions: tuple[Condition, ...]
    reference_condition: str
    x_label: str
    slurm: dict[str, Any]
    cross_corpus: CrossCorpus | None = None

    def fit_entries(
        self, key: RunKey, extra: Sequence[str] = ()
    ) -> list[tuple[str, tuple[str, ...]]]:
        """The ``mts-lightning fit`` arguments of one run in order, each with the entry of the
        file that gives it: ``configs``, ``overrides``, ``variants.<name>``, ``folds``,
        ``seeds``, then ``extra`` (the command's arguments after ``--``)."""
        if key.variant not in self.variants:
            raise ExperimentError(
                f"variant {key.variant!r} is not in {self.path} (variants: {', '.join(self.variants)})"
            )
        if (key.corpus is None) != (self.cross_corpus is None) or (
            self.cross_corpus is not None and key.corpus not in self.cross_corpus.train
        ):
            trains = ", ".join(self.cross_corpus.train) if self.cross_corpus else "none"
            raise ExperimentError(
                f"training corpus {key.corpus!r} is not in {self.path} (training corpora: {trains})"
            )
        corpus_args = self.cross_corpus.fit_args(self.path, key.corpus) if key.corpus else []
        return [
            ("configs", tuple(f"--config={c}" for c in self.configs)),
            ("overrides", self.overrides),
            (f"cross_corpus.corpora.{key.corpus}", tuple(corpus_args)),
            (f"variants.{key.variant}", self.variants[key.variant]),
            ("folds", (f"--data.fold={key.fold}",)),
            ("seeds", (f"--seed_everything={key.seed}",)),
            ("the arguments after '--'", tuple(extra)),
        ]

    def fit_args(self, key: RunKey, extra: Sequence[str] = ()) -> list[str]:
        """The ``mts-lightning fit`` arguments of one run (without its run folder)."""
        return ["fit", *(arg for _, args in self.fit_entries(key, extra) for arg in args)]

    def plan(
        self,
        variants: Sequence[str] | None = None,
        folds: Sequence[int] | None = None,
        seeds: Sequence[int] | None = None,
        corpora: Sequence[str] | None = None,
    ) -> list[RunKey]:
        """Every (variant, fold, seed) in file order (first by training corpus in a
        cross-corpus experiment), optionally restricted to subsets of the file's own values
        (a subset never adds a value the file does not name)."""
        chosen_variants = _subset("variants", variants, tuple(self.variants), self.path)
        chosen_folds = _subset("folds", folds, self.folds, self.path)
        chosen_seeds = _subset("seeds", seeds, self.seeds, self.path)
        known = self.cross_corpus.train if self.cross_corpus else ()
        if corpora is not None and not known:
            raise ExperimentError(
                f"--train_corpora: {self.path} is not a cross-corpus experiment (no cross_corpus)"
            )
        chosen_corpora = _subset("train_corpora", corpora, known, self.path) if known else [None]
        return [
            RunKey(v, f, s, c)
            for c in chosen_corpora
            for v in chosen_variants
            for f in chosen_folds
            for s in chosen_seeds
        ]

    def description(self) -> dict[str, Any]:
        """What ``collect`` needs to rebuild the summary: variant and condition order, the x
        values, the reference condition and the axis label (stored with every run)."""
        description = {
            "name": self.name,
            "variants": list(self.variants),
            "conditions": [{"name": c.name, "x": c.x} for c in self.conditions],
            "reference_condition": self.reference_condition,
            "x_label": self.x_label,
        }
        if self.cross_corpus is not None:
            cross = self.cross_corpus
            description["cross_corpus"] = {
                "label_set": cross.label_set,
                "train": list(cross.train),
                "test": list(cross.test),
                "balance_test": cross.balance_test,
                "normalise_with": cross.normalise_with,
            }
        return description


def tempo_conditions(tempos: Sequence[float]) -> list[Condition]:
    """A tempo sweep as test conditions: ``tempo_<t>`` testing with ``--data.test_tempo=<t>``
    (clips played ``t`` times as fast), placed at ``x = t``."""
    conditions = []
    for i, tempo in enumerate(tempos):
        try:
            check_tempo(f"tempo_sweep[{i}]", tempo)
        except ValueError as err:
            raise ExperimentError(str(err)) from None
        name, override = f"tempo_{float(tempo):g}", f"--data.test_tempo={float(tempo):g}"
        conditions.append(Condition(name, (override,), tempo, entry=f"tempo_sweep[{i}]"))
    return conditions


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read and check an experiment file; every error names the file and the setting."""
    path = Path(path)
    if not path.is_file():
        raise ExperimentError(f"--config: experiment file '{path}' does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ExperimentError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ExperimentError(f"{path}: an experiment file is a mapping (configs, variants, ...)")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ExperimentError(
            f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(_KEYS))}"
        )

    def need(key: str) -> Any:
        if raw.get(key) in (None, [], {}):
            raise ExperimentError(f"{path}: '{key}' is missing or empty")
        return raw[key]

    name = str(raw.get("name") or path.stem)
    _check_name(path, "name", name)
    configs = tuple(_config_path(path, c) for c in _str_list(path, "configs", need("configs")))
    overrides = tuple(_str_list(path, "overrides", raw.get("overrides") or []))
    variants_raw = need("variants")
    if not isinstance(variants_raw, dict):
        raise ExperimentError(f"{path}: 'variants' maps each variant's name to a list of overrides")
    variants = {}
    for variant, args in variants_raw.items():
        _check_name(path, "variants", str(variant))
        variants[str(variant)] = tuple(_str_list(path, f"variants.{variant}", args or []))
    folds = tuple(_int_list(path, "folds", need("folds"), low=0))
    seeds = tuple(_int_list(path, "seeds", need("seeds"), low=0))

    conditions = [_condition(path, i, c) for i, c in enumerate(raw.get("conditions") or [])]
    tempos = raw.get("tempo_sweep") or []
    if not isinstance(tempos, list):
        raise ExperimentError(f"{path}: 'tempo_sweep' is a list of tempos, e.g. [0.7, 1.0, 1.4]")
    try:
        conditions += tempo_conditions(tempos)
    except ExperimentError as err:
        raise ExperimentError(f"{path}: {err}") from None
    if not conditions:
        raise ExperimentError(
            f"{path}: no test condition: give 'conditions' (e.g. [{{name: test}}]) or 'tempo_sweep'"
        )
    names = [c.name for c in conditions]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ExperimentError(f"{path}: test condition names repeat: {', '.join(duplicates)}")

    reference = raw.get("reference_condition")
    if reference is None:
        reference = "tempo_1" if "tempo_1" in names else names[0]
    if reference not in names:
        raise ExperimentError(
            f"{path}: reference_condition {reference!r} is not a condition ({', '.join(names)})"
        )
    slurm = raw.get("slurm") or {}
    if not isinstance(slurm, dict):
        raise ExperimentError(f"{path}: 'slurm' maps submitit parameters to values")
    x_label = str(raw.get("x_label") or ("test tempo" if tempos else "test condition"))
    return ExperimentSpec(
        path=path,
        name=name,
        configs=configs,
        overrides=overrides,
        variants=variants,
        folds=folds,
        seeds=seeds,
        conditions=tuple(conditions),
        reference_condition=str(reference),
        x_label=x_label,
        slurm=dict(slurm),
        cross_corpus=_cross_corpus(path, raw.get("cross_corpus")),
    )


def _check_name(path: Path, key: str, name: str) -> None:
    if not _NAME.match(name):
        raise ExperimentError(
            f"{path}: {key}: {name!r} is not a usable name (letters, digits, '_', '.', '-'; "
            "it names folders)"
        )


def _config_path(path: Path, config: str) -> Path:
    resolved = (path.parent / config).resolve()
    if not resolved.is_file():
        raise ExperimentError(
            f"{path}: configs: '{config}' (relative to the experiment file) is not a file"
        )
    return resolved


def _str_list(path: Path, key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ExperimentError(
            f"{path}: '{key}' is a list of strings (CLI arguments such as "
            f"'--trainer.max_epochs=5'), got {value!r}"
        )
    return list(value)


def _int_list(path: Path, key: str, value: Any, low: int) -> list[int]:
    if (
        not isinstance(value, list)
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= low for v in value)
        or len(set(value)) != len(value)
    ):
        raise ExperimentError(
            f"{path}: '{key}' is a list of distinct integers >= {low}, got {value!r}"
        )
    return list(value)


def _condition(path: Path, index: int, raw: Any) -> Condition:
    if not isinstance(raw, dict) or "name" not in raw:
        raise ExperimentError(
            f"{path}: conditions[{index}] is a mapping with a 'name' (and 'overrides', 'x')"
        )
    unknown = sorted(set(raw) - {"name", "overrides", "x"})
    if unknown:
        raise ExperimentError(f"{path}: conditions[{index}]: unknown key(s) {', '.join(unknown)}")
    name = str(raw["name"])
    _check_name(path, f"conditions[{index}].name", name)
    overrides = tuple(_str_list(path, f"conditions[{index}].overrides", raw.get("overrides") or []))
    x = raw.get("x")
    if x is not None and (isinstance(x, bool) or not isinstance(x, (int, float))):
        raise ExperimentError(f"{path}: conditions[{index}].x is a number, got {x!r}")
    return Condition(name, overrides, None if x is None else float(x), entry=f"conditions[{index}]")


def _subset(key: str, chosen: Sequence[Any] | None, known: Sequence[Any], path: Path) -> list:
    if chosen is None:
        return list(known)
    missing = [c for c in chosen if c not in known]
    if missing:
        raise ExperimentError(
            f"--{key}: {', '.join(map(str, missing))} not in {path} "
            f"({key}: {', '.join(map(str, known))})"
        )
    return [k for k in known if k in chosen]


def _cross_corpus(path: Path, raw: Any) -> CrossCorpus | None:
    """The checked ``cross_corpus`` block, or None when the file has none."""
    if raw is None:
        return None
    where = f"{path}: cross_corpus"
    if not isinstance(raw, dict):
        raise ExperimentError(f"{where} is a mapping (label_set, corpora, train, test, ...)")
    unknown = sorted(set(raw) - _CROSS_KEYS)
    if unknown:
        raise ExperimentError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_CROSS_KEYS))}"
        )
    from mts_lightning.data.corpora import list_corpora
    from mts_lightning.data.label_sets import get_label_set

    corpora_raw = raw.get("corpora")
    if not isinstance(corpora_raw, dict) or not corpora_raw:
        raise ExperimentError(
            f"{where}.corpora maps each corpus name to {{root: FOLDER, overrides: [...]}}"
        )
    corpora = {}
    for name, entry in corpora_raw.items():
        if name not in list_corpora():
            raise ExperimentError(
                f"{where}.corpora: {name!r} is not a registered corpus ({', '.join(list_corpora())})"
            )
        entry = entry or {}
        if not isinstance(entry, dict) or set(entry) - {"root", "overrides"}:
            raise ExperimentError(
                f"{where}.corpora.{name} is a mapping with 'root' and 'overrides', got {entry!r}"
            )
        root = entry.get("root")
        overrides = _str_list(
            path, f"cross_corpus.corpora.{name}.overrides", entry.get("overrides") or []
        )
        corpora[name] = CorpusEntry(None if root is None else str(root), tuple(overrides))
    parts = {}
    for part in ("train", "test"):
        chosen = raw.get(part)
        chosen = (
            list(corpora) if chosen is None else _str_list(path, f"cross_corpus.{part}", chosen)
        )
        missing = [c for c in chosen if c not in corpora]
        if missing or not chosen or len(set(chosen)) != len(chosen):
            raise ExperimentError(
                f"{where}.{part} is a list of distinct corpora of cross_corpus.corpora "
                f"({', '.join(corpora)}), got {chosen!r}"
            )
        parts[part] = tuple(chosen)
    label_set = raw.get("label_set")
    try:
        get_label_set(label_set)
    except ValueError as err:
        raise ExperimentError(f"{where}.label_set: {err}") from err
    balance = raw.get("balance_test", False)
    if not isinstance(balance, bool):
        raise ExperimentError(f"{where}.balance_test is true or false, got {balance!r}")
    normalise_with = raw.get("normalise_with", "train")
    if normalise_with not in ("train", "test"):
        raise ExperimentError(
            f"{where}.normalise_with is 'train' or 'test', got {normalise_with!r}"
        )
    return CrossCorpus(
        label_set, corpora, parts["train"], parts["test"], balance, str(normalise_with)
    )
