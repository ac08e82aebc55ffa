"""Corpora: one module per corpus, each registering a :class:`CorpusSpec`.

Every module of this package is imported here, so a new corpus is one new file that calls
:func:`register_corpus` (see ``emodb.py`` for a corpus named by fixed fields, ``manifest.py``
for one read from a list). The names below that predate the registry (``CORPUS_NAMES``,
``CORPUS_CLASSES``, ``SCANNERS``, ``scan_*``) are derived from it.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

from .base import Clip, Corpus, CorpusScan, FileCorpus, SkippedFile
from .crema_d import scan_crema_d
from .emodb import scan_emodb
from .fields import NamingScheme
from .iemocap import scan_iemocap
from .manifest import scan_manifest
from .ravdess import scan_ravdess
from .registry import CorpusSpec, PaperProtocol, get_corpus, list_corpora, register_corpus
from .savee import scan_savee
from .synthetic import SyntheticConfig, SyntheticCorpus, SyntheticOptions
from .tess import scan_tess

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

#: Registered corpus names when the package was imported.
CORPUS_NAMES: tuple[str, ...] = tuple(list_corpora())
#: Class names of each corpus with fixed classes, in the corpus's official code order.
CORPUS_CLASSES: dict[str, list[str]] = {
    name: list(spec.classes)
    for name in CORPUS_NAMES
    if (spec := get_corpus(name)).classes is not None
}
#: Scanner of each corpus read from a folder or file (``scan(root, skip_bad_files, ...)``).
SCANNERS: dict[str, Callable[..., FileCorpus]] = {
    name: spec.scan for name in CORPUS_NAMES if (spec := get_corpus(name)).needs_root
}

__all__ = [
    "CORPUS_CLASSES",
    "CORPUS_NAMES",
    "SCANNERS",
    "Clip",
    "Corpus",
    "CorpusScan",
    "CorpusSpec",
    "FileCorpus",
    "NamingScheme",
    "PaperProtocol",
    "SkippedFile",
    "SyntheticConfig",
    "SyntheticCorpus",
    "SyntheticOptions",
    "get_corpus",
    "list_corpora",
    "register_corpus",
    "scan_crema_d",
    "scan_emodb",
    "scan_iemocap",
    "scan_manifest",
    "scan_ravdess",
    "scan_savee",
    "scan_tess",
]
