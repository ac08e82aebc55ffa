"""CREMA-D: ``ActorID_Sentence_Emotion_Level.wav``, e.g. ``1001_DFA_ANG_XX.wav``; 6 classes,
91 actors (the speaker is the actor id)."""

from __future__ import annotations

import re
from pathlib import Path

from .base import FileCorpus
from .fields import NamingScheme
from .protocols import speaker_window
from .registry import CorpusSpec, register_corpus

CREMA_D_EMOTIONS = {
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
CREMA_D = NamingScheme(
    name="crema_d",
    display="CREMA-D",
    pattern=re.compile(r"^(?P<speaker>\d{4})_[A-Z]{3}_(?P<emotion>[A-Z]{3})_(LO|MD|HI|XX|X)$"),
    emotions=CREMA_D_EMOTIONS,
    example="1001_DFA_ANG_XX.wav (ActorID_Sentence_Emotion_Level)",
)


def scan_crema_d(root: str | Path | None, skip_bad_files: bool = False) -> FileCorpus:
    """CREMA-D: ``ActorID_Sentence_Emotion_Level.wav``; speaker is the actor id."""
    return CREMA_D.scan(root, skip_bad_files)


register_corpus(CorpusSpec("crema_d", scan_crema_d, speaker_window, classes=CREMA_D.classes))
