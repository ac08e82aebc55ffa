"""RAVDESS: ``MM-VV-EE-II-SS-RR-AA.wav`` (modality, vocal channel, emotion, intensity,
statement, repetition, actor); 8 classes, 24 actors."""

from __future__ import annotations

import re
from pathlib import Path

from .base import CorpusScan, FileCorpus, audio_files, check_root
from .protocols import speaker_window
from .registry import CorpusSpec, register_corpus

RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fear",
    "07": "disgust",
    "08": "surprise",
}
RAVDESS_CLASSES = tuple(RAVDESS_EMOTIONS.values())

RAVDESS_RE = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
RAVDESS_EXAMPLE = (
    "03-01-06-01-02-01-12.wav (modality-channel-emotion-intensity-statement-repetition-actor)"
)


def scan_ravdess(
    root: str | Path | None, skip_bad_files: bool = False, include_song: bool = False
) -> FileCorpus:
    """RAVDESS: ``MM-VV-EE-II-SS-RR-AA.wav``; speaker ``Actor_AA``.

    Only audio-only files (modality 03) are used; song files (vocal channel 02) are excluded
    unless ``include_song``.
    """
    root = check_root(root, "RAVDESS", RAVDESS_EXAMPLE)
    scan = CorpusScan("ravdess", "RAVDESS", skip_bad_files)
    for path in audio_files(root, scan):
        m = RAVDESS_RE.match(path.stem)
        if m is None:
            scan.bad(path, f"file name outside the RAVDESS convention; expected {RAVDESS_EXAMPLE}")
            continue
        modality, channel, emotion, intensity, statement, repetition, actor = m.groups()
        problems = [
            f"{what} code {code!r} not in {allowed}"
            for what, code, allowed in (
                ("modality", modality, ("01", "02", "03")),
                ("vocal channel", channel, ("01", "02")),
                ("emotion", emotion, tuple(RAVDESS_EMOTIONS)),
                ("intensity", intensity, ("01", "02")),
                ("statement", statement, ("01", "02")),
                ("repetition", repetition, ("01", "02")),
                ("actor", actor, tuple(f"{i:02d}" for i in range(1, 25))),
            )
            if code not in allowed
        ]
        if problems:
            scan.bad(
                path, f"invalid RAVDESS name ({'; '.join(problems)}); expected {RAVDESS_EXAMPLE}"
            )
        elif modality != "03":
            scan.exclude(path, f"RAVDESS modality {modality} is not audio-only (03)")
        elif channel == "02" and not include_song:
            scan.exclude(
                path, "RAVDESS song file (vocal channel 02); set include_song=True to use it"
            )
        else:
            scan.add(path, RAVDESS_EMOTIONS[emotion], f"Actor_{actor}", path.stem)
    return scan.finish(root, RAVDESS_EXAMPLE, RAVDESS_CLASSES)


register_corpus(
    CorpusSpec(
        "ravdess",
        scan_ravdess,
        speaker_window,
        classes=RAVDESS_CLASSES,
    )
)
