"""SAVEE (Surrey): ``{DC,JE,JK,KL}/{code}{nn}.wav`` or flat ``DC_a01.wav``; 7 classes,
4 speakers."""

from __future__ import annotations

import re
from pathlib import Path

from .base import CorpusScan, FileCorpus, audio_files, check_root
from .protocols import speaker_window
from .registry import CorpusSpec, register_corpus

SAVEE_EMOTIONS = {
    "a": "angry",
    "d": "disgust",
    "f": "fear",
    "h": "happy",
    "n": "neutral",
    "sa": "sad",
    "su": "surprise",
}
SAVEE_SPEAKERS = ("DC", "JE", "JK", "KL")
SAVEE_CLASSES = tuple(SAVEE_EMOTIONS.values())

SAVEE_CODE = r"(sa|su|a|d|f|h|n)(\d\d)"  # two-letter codes first: "sa01" is sad, not angry
SAVEE_NESTED_RE = re.compile(rf"^{SAVEE_CODE}$")
SAVEE_FLAT_RE = re.compile(rf"^({'|'.join(SAVEE_SPEAKERS)})_{SAVEE_CODE}$")
SAVEE_EXAMPLE = "DC/sa01.wav or DC_sa01.wav (speaker DC/JE/JK/KL, emotion code, number)"


def scan_savee(root: str | Path | None, skip_bad_files: bool = False) -> FileCorpus:
    """SAVEE: ``{DC,JE,JK,KL}/{code}{nn}.wav`` or flat ``DC_a01.wav``."""
    root = check_root(root, "SAVEE", SAVEE_EXAMPLE)
    scan = CorpusScan("savee", "SAVEE", skip_bad_files)
    for path in audio_files(root, scan):
        flat = SAVEE_FLAT_RE.match(path.stem)
        nested = SAVEE_NESTED_RE.match(path.stem)
        if flat is not None:
            speaker, code, number = flat.groups()
        elif nested is not None and path.parent.name in SAVEE_SPEAKERS:
            speaker, (code, number) = path.parent.name, nested.groups()
        else:
            scan.bad(path, f"file name outside the SAVEE convention; expected {SAVEE_EXAMPLE}")
            continue
        scan.add(path, SAVEE_EMOTIONS[code], speaker, f"{speaker}_{code}{number}")
    return scan.finish(root, SAVEE_EXAMPLE, SAVEE_CLASSES)


register_corpus(CorpusSpec("savee", scan_savee, speaker_window, classes=SAVEE_CLASSES))
