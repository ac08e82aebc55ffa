"""Name -> corpus registry, so that configs pick a corpus by string and a new corpus is one file.

A module in this package (or any module imported before the DataModule is built) describes its
corpus with a :class:`CorpusSpec` and registers it with :func:`register_corpus`; the DataModule,
the splits and the CLI only ever ask the registry.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mts_lightning.arguments import check_keyword_arguments

from .base import Clip, Corpus

#: The paper's split of a corpus: ``protocol(clips, fold, seed) -> {"train": [...], "val":
#: [...], "test": [...]}`` (clip indices).
PaperProtocol = Callable[[Sequence[Clip], int, int], dict[str, list[int]]]

_CORPORA: dict[str, CorpusSpec] = {}
#: Keyword arguments of ``scan`` that the DataModule passes itself, never corpus options.
SCAN_ARGUMENTS = ("root", "skip_bad_files", "part")


@dataclass(frozen=True)
class CorpusSpec:
    """A corpus the DataModule can load by name.

    Args:
        name: the value of ``corpus`` in configs.
        scan: ``scan(root, skip_bad_files=False, **options) -> Corpus``.
        paper_protocol: the MTS paper's split for this corpus (``split="paper"``).
        classes: the fixed class names in the corpus's official code order; ``None`` when the
            clips decide them (a manifest's labels, the synthetic corpus's settings).
        options: what declares the corpus options (the DataModule's ``corpus_options``,
            passed to ``scan`` by name): a callable whose keyword parameters, with their type
            hints and defaults, are the options (a dataclass, as the synthetic corpus's);
            ``None`` (default): ``scan`` itself, less ``root``, ``skip_bad_files``, ``part``
            and the ``label_set_scan`` keys (RAVDESS's ``include_song``).
        class_options: those options that decide the classes; a checkpoint restores them for
            ``predict``.
        needs_root: whether ``scan`` reads the DataModule's ``root``.
        test_part_differs: the test part is scanned apart, with ``part="test"`` passed to
            ``scan`` (the synthetic corpus renders it with its own stretch range).
        label_set_scan: keyword arguments passed to ``scan`` when a label set maps the
            classes: the scan then keeps apart labels it merges otherwise (IEMOCAP's
            ``excited``), so that each label set decides (:mod:`~mts_lightning.data.label_sets`).
    """

    name: str
    scan: Callable[..., Corpus]
    paper_protocol: PaperProtocol
    classes: tuple[str, ...] | None = None
    options: Callable[..., Any] | None = None
    class_options: tuple[str, ...] = ()
    needs_root: bool = True
    test_part_differs: bool = False
    label_set_scan: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"corpus name must be an identifier, got {self.name!r}")
        unknown = set(self.class_options) - set(self.option_defaults)
        if unknown:
            raise ValueError(
                f"corpus {self.name!r}: class_options {sorted(unknown)} are not in its options"
            )

    @property
    def option_defaults(self) -> dict[str, Any]:
        """Each corpus option and its default, in the order of their declaration."""
        declared = self.scan if self.options is None else self.options
        reserved = (*SCAN_ARGUMENTS, *self.label_set_scan) if self.options is None else ()
        return {
            name: parameter.default
            for name, parameter in inspect.signature(declared).parameters.items()
            if name not in reserved
            and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
            and parameter.default is not parameter.empty
        }

    def corpus_options(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """``given`` checked against the corpus's options (an unknown name or a value of the
        wrong type raises ``ValueError``, one line naming it and listing the options) and
        completed with their defaults."""
        given = dict(given or {})
        defaults = self.option_defaults
        if given and not defaults:
            raise ValueError(
                f"corpus_options: corpus {self.name!r} takes no options, got "
                f"{', '.join(map(str, given))}"
            )
        declared = self.scan if self.options is None else self.options
        check_keyword_arguments(declared, given, f"corpus_options of {self.name!r}", defaults)
        return {**defaults, **given}


def register_corpus(spec: CorpusSpec) -> CorpusSpec:
    """Register ``spec`` under ``spec.name`` (refused when the name is taken by another scan)."""
    known = _CORPORA.get(spec.name)
    if known is not None and known.scan.__qualname__ != spec.scan.__qualname__:
        raise ValueError(f"corpus {spec.name!r} is already registered (scan {known.scan})")
    _CORPORA[spec.name] = spec
    return spec


def get_corpus(name: str) -> CorpusSpec:
    """The corpus registered as ``name``; the error lists the registered ones."""
    if name not in _CORPORA:
        raise ValueError(
            f"corpus must be one of the registered corpora: {', '.join(list_corpora())}; got "
            f"{name!r} (a new corpus is a module in mts_lightning/data/corpora/ calling "
            "register_corpus)"
        )
    return _CORPORA[name]


def list_corpora() -> list[str]:
    """The registered corpus names, sorted."""
    return sorted(_CORPORA)
