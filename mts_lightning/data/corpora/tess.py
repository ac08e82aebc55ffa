"""TESS (Toronto): ``{OAF,YAF}_{word}_{emotion}.wav``; 7 classes, 2 speakers, so the paper
halves each speaker's files instead of splitting by speaker."""

from __future__ import annotations

import re
from pathlib import Path

from .base import FileCorpus
from .fields import NamingScheme
from .protocols import speaker_halves
from .registry import CorpusSpec, register_corpus

TESS_EMOTIONS = {
    "angry": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happy",
    "neutral": "neutral",
    "ps": "pleasant_surprise",
    "pleasant_surprise": "pleasant_surprise",
    "pleasant_surprised": "pleasant_surprise",
    "sad": "sad",
}
TESS = NamingScheme(
    name="tess",
    display="TESS",
    # the word is the shortest run that leaves a whole emotion code (which may hold "_")
    pattern=re.compile(r"^(?P<speaker>OAF|YAF)_.+?_(?P<emotion>pleasant_surprised?|[a-z]+)$"),
    emotions=TESS_EMOTIONS,
    example="OAF_back_angry.wav ({OAF,YAF}_word_emotion)",
    ignore_case=True,
)


def scan_tess(root: str | Path | None, skip_bad_files: bool = False) -> FileCorpus:
    """TESS: ``{OAF,YAF}_{word}_{emotion}.wav``; speaker OAF or YAF."""
    return TESS.scan(root, skip_bad_files)


register_corpus(CorpusSpec("tess", scan_tess, speaker_halves, classes=TESS.classes))
