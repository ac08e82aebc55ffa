"""The DataModule's settings in their grouped form, from the flat form written before the
groups (the checkpoints and configs of earlier versions).

Before the groups, every feature setting, augmentation setting and corpus option was a
DataModule argument of its own: ``n_mels: 40``, ``augment: true``, ``augment_tempos: [...]``,
``synthetic_speakers: 4``, ``include_song: true``. They are now fields of ``features``
(:class:`~mts_lightning.data.features.FeatureConfig`), ``augment``
(:class:`~mts_lightning.data.augment.Augment`) and ``corpus_options`` (the corpus's own
options, :meth:`~mts_lightning.data.corpora.CorpusSpec.corpus_options`).
:func:`grouped_settings` translates a flat mapping (a checkpoint's saved data settings);
:func:`reject_flat_settings` refuses one in a config, showing the grouped YAML.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .corpora import get_corpus, list_corpora
from .features import FeatureConfig

#: Flat feature setting -> its field of ``features``.
_FEATURES = {
    "features": "kind",
    **{
        name: name
        for name in ("sample_rate", "n_fft", "hop_length", "win_length", "n_mels", "f_min", "f_max")
    },
}
#: Flat SpecAugment setting -> its field of ``augment.spec_augment``.
_SPEC_AUGMENT = {
    "time_masks": "time_masks",
    "time_mask_frames": "time_mask_frames",
    "freq_masks": "freq_masks",
    "freq_mask_bins": "freq_mask_bins",
    "augment_stretch": "stretch",
}
#: Flat corpus option -> its name in ``corpus_options``.
_CORPUS_OPTIONS = {
    "include_song": "include_song",
    "synthetic_seed": "seed",
    "synthetic_classes": "num_classes",
    "synthetic_speakers": "num_speakers",
    "synthetic_clips_per_speaker": "clips_per_speaker",
    "synthetic_duration": "duration",
    "synthetic_train_stretch": "train_stretch",
    "synthetic_test_stretch": "test_stretch",
}
#: Every flat spelling that the groups replaced.
FLAT_SETTINGS: tuple[str, ...] = (
    *_FEATURES,
    "augment",
    *_SPEC_AUGMENT,
    "augment_tempos",
    *_CORPUS_OPTIONS,
)


def flat_settings(data: Mapping[str, Any]) -> list[str]:
    """The keys of ``data`` (DataModule settings) in the flat form: a feature kind or an
    ``augment`` switch given as a plain value, or a setting the groups replaced."""
    flat = []
    for key, value in data.items():
        if key == "features" and isinstance(value, Mapping):
            continue
        if key == "augment" and (value is None or isinstance(value, Mapping)):
            continue
        if key in FLAT_SETTINGS:
            flat.append(key)
    return flat


def grouped_settings(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` (DataModule settings) with its flat settings moved into their groups; settings
    already grouped, and the others, are kept as they are.

    A flat corpus option goes into ``corpus_options`` when ``data``'s corpus (default:
    ``synthetic``) takes it; the others had no effect and are dropped, as are the SpecAugment
    settings when ``augment`` was off.

    Example:
        >>> grouped_settings({"corpus": "synthetic", "n_mels": 40, "synthetic_speakers": 4,
        ...                   "augment": True, "time_masks": 1, "augment_tempos": [0.7, 1.4]})
        {'corpus': 'synthetic', 'features': {'n_mels': 40}, 'corpus_options': {'num_speakers': 4}, 'augment': {'spec_augment': {'time_masks': 1}, 'tempos': [0.7, 1.4]}}
    """
    flat = set(flat_settings(data))
    if not flat:
        return dict(data)
    corpus = data.get("corpus", "synthetic")
    takes = set(get_corpus(corpus).option_defaults) if corpus in list_corpora() else set()
    grouped: dict[str, Any] = {}
    features: dict[str, Any] = {}
    corpus_options: dict[str, Any] = {}
    spec_augment: dict[str, Any] = {}
    augment: dict[str, Any] = {}
    for key, value in data.items():
        if key not in flat:
            grouped[key] = value
        elif key in _FEATURES:
            features[_FEATURES[key]] = value
        elif key in _CORPUS_OPTIONS:
            if _CORPUS_OPTIONS[key] in takes:
                corpus_options[_CORPUS_OPTIONS[key]] = value
        elif key in _SPEC_AUGMENT:
            spec_augment[_SPEC_AUGMENT[key]] = value
        elif key == "augment_tempos":
            augment["tempos"] = value
    if features:
        grouped["features"] = {**_mapping(data.get("features")), **features}
    if corpus_options:
        grouped["corpus_options"] = {**_mapping(data.get("corpus_options")), **corpus_options}
    if "augment" in flat or augment or spec_augment:
        switched_on = data.get("augment") is True
        augment = {"spec_augment": spec_augment if switched_on else None, **augment}
        if "augment" not in flat:
            augment = {**_mapping(data.get("augment")), **augment}
        grouped["augment"] = augment
    return grouped


def saved_features(data: Mapping[str, Any]) -> FeatureConfig:
    """The feature settings of a checkpoint's saved data settings (flat ones too)."""
    return FeatureConfig(**grouped_settings(data).get("features", {}))


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def reject_flat_settings(data: Mapping[str, Any], where: str) -> None:
    """Raise ``ValueError`` for flat settings in ``data`` (a config's ``data`` section, found
    at ``where``), one line showing the grouped YAML with the same values."""
    flat = flat_settings(data)
    if not flat:
        return
    grouped = grouped_settings({k: data[k] for k in ("corpus", *flat) if k in data})
    grouped.pop("corpus", None)
    raise ValueError(
        f"{where}: data.{', data.'.join(flat)} are spellings from before the grouped data "
        f"settings; write data: {yaml_flow(grouped)}"
    )


def reject_flat_arguments(args: list[str], corpus: str = "synthetic") -> None:
    """Raise ``ValueError`` for a flat setting given on a command line (``--data.KEY=VALUE``
    or ``--data.KEY VALUE``), one line showing the grouped YAML and command-line spelling."""
    flat: dict[str, Any] = {}
    for i, arg in enumerate(args):
        if not (isinstance(arg, str) and arg.startswith("--data.")):
            continue
        key, has_value, value = arg[len("--data.") :].partition("=")
        if key not in FLAT_SETTINGS:
            continue
        if not has_value:
            value = args[i + 1] if i + 1 < len(args) else ""
        flat[key] = _parse(value)
    flat = {key: flat[key] for key in flat_settings(flat)}
    if not flat:
        return
    grouped = grouped_settings({"corpus": corpus, **flat})
    grouped.pop("corpus", None)
    given = ", ".join(f"--data.{key}" for key in flat)
    raise ValueError(
        f"{given}: spellings from before the grouped data settings; write data: "
        f"{yaml_flow(grouped)} (on the command line: {' '.join(dotted_arguments(grouped))})"
    )


def _parse(value: str) -> Any:
    """A command-line value as the config would read it (YAML)."""
    import yaml

    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def dotted_arguments(grouped: Mapping[str, Any], prefix: str = "--data") -> list[str]:
    """``grouped`` as command-line arguments, one per leaf: ``--data.features.n_mels=40``."""
    arguments = []
    for key, value in grouped.items():
        if isinstance(value, Mapping) and value:
            arguments += dotted_arguments(value, f"{prefix}.{key}")
        else:
            arguments.append(f"{prefix}.{key}={yaml_flow(value)}")
    return arguments


def yaml_flow(value: Any) -> str:
    """``value`` in YAML flow style on one line: ``{features: {n_mels: 40}}``."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {yaml_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_flow(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, str):
        return value
    return json.dumps(value)
