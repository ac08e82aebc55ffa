"""EmoDB (Berlin): e.g. ``03a01Fa.wav``: speaker (2 digits), text code (3), emotion letter
(German initials), version; 7 classes, 10 speakers."""

from __future__ import annotations

import re
from pathlib import Path

from .base import FileCorpus
from .fields import NamingScheme
from .protocols import speaker_window
from .registry import CorpusSpec, register_corpus

EMODB_EMOTIONS = {
    "W": "angry",  # Wut / Ärger
    "L": "boredom",  # Langeweile
    "E": "disgust",  # Ekel
    "A": "fear",  # Angst
    "F": "happy",  # Freude
    "T": "sad",  # Trauer
    "N": "neutral",
}
EMODB = NamingScheme(
    name="emodb",
    display="EmoDB",
    pattern=re.compile(r"^(?P<speaker>\d\d)[a-z]\d\d(?P<emotion>[A-Z])[a-z]$"),
    emotions=EMODB_EMOTIONS,
    example="03a01Fa.wav (speaker, text code, emotion letter, version)",
)


def scan_emodb(root: str | Path | None, skip_bad_files: bool = False) -> FileCorpus:
    """EmoDB: e.g. ``03a01Fa.wav`` (speaker 03, text a01, emotion F = happiness, version a)."""
    return EMODB.scan(root, skip_bad_files)


register_corpus(CorpusSpec("emodb", scan_emodb, speaker_window, classes=EMODB.classes))
