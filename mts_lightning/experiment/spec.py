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
    overrides: ["--data.synthetic_test_stretch=[0.6, 1.6]"]
    x: 1.0                           # optional place on the figures' x axis
tempo_sweep: [0.7, 1.0, 1.4]         # adds conditions tempo_0.7 ... (--data.test_tempo)
reference_condition: seen_speeds     # of the bar chart; default tempo 1.0 or the first
x_label: test time stretch           # of the condition figure
slurm: {timeout_min: 60}             # submitit parameters for --launcher slurm
```
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

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
}


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
    """One run of the plan: a variant on a fold with a seed."""

    variant: str
    fold: int
    seed: int

    @property
    def folder_name(self) -> str:
        """Folder of the run under ``output_dir/runs/<variant>/``."""
        return f"fold{self.fold}_seed{self.seed}"


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
        return [
            ("configs", tuple(f"--config={c}" for c in self.configs)),
            ("overrides", self.overrides),
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
    ) -> list[RunKey]:
        """Every (variant, fold, seed) in file order, optionally restricted to subsets of the
        file's own values (a subset never adds a value the file does not name)."""
        chosen_variants = _subset("variants", variants, tuple(self.variants), self.path)
        chosen_folds = _subset("folds", folds, self.folds, self.path)
        chosen_seeds = _subset("seeds", seeds, self.seeds, self.path)
        return [
            RunKey(v, f, s) for v in chosen_variants for f in chosen_folds for s in chosen_seeds
        ]

    def description(self) -> dict[str, Any]:
        """What ``collect`` needs to rebuild the summary: variant and condition order, the x
        values, the reference condition and the axis label (stored with every run)."""
        return {
            "name": self.name,
            "variants": list(self.variants),
            "conditions": [{"name": c.name, "x": c.x} for c in self.conditions],
            "reference_condition": self.reference_condition,
            "x_label": self.x_label,
        }


def tempo_conditions(tempos: Sequence[float]) -> list[Condition]:
    """A tempo sweep as test conditions: ``tempo_<t>`` testing with ``--data.test_tempo=<t>``
    (clips played ``t`` times as fast), placed at ``x = t``."""
    conditions = []
    for i, tempo in enumerate(tempos):
        if isinstance(tempo, bool) or not isinstance(tempo, (int, float)) or not tempo > 0:
            raise ExperimentError(f"tempo_sweep: tempos must be positive numbers, got {tempo!r}")
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
    conditions += tempo_conditions(tempos)
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
