"""IEMOCAP: labels from ``Session*/dialog/EmoEvaluation/*.txt``, audio from
``Session*/sentences/wav/<dialog>/<utterance>.wav``; the usual 4 classes; the paper splits it
by session."""

from __future__ import annotations

import re
from pathlib import Path

from .base import CorpusScan, FileCorpus, check_root
from .protocols import speaker_groups
from .registry import CorpusSpec, register_corpus

IEMOCAP_EMOTIONS = {"neu": "neutral", "ang": "angry", "hap": "happy", "exc": "happy", "sad": "sad"}
IEMOCAP_CLASSES = ("neutral", "angry", "happy", "sad")
#: The classes with ``merge_excited=False`` (what label sets map from: ``shared4`` leaves
#: ``excited`` out, ``shared4_excited`` lets it join ``happy``).
IEMOCAP_LABEL_SET_CLASSES = (*IEMOCAP_CLASSES, "excited")

IEMOCAP_LINE_RE = re.compile(r"^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(Ses\d\d[FM]_\S+)\s+(\S+)\s+\[")
IEMOCAP_UTT_RE = re.compile(r"^Ses(\d\d)[FM]_(.+)_([FM])\d+$")
IEMOCAP_EXAMPLE = (
    "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt with lines like "
    "'[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5, 2.5, 2.5]', and "
    "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav"
)


def scan_iemocap(
    root: str | Path | None, skip_bad_files: bool = False, merge_excited: bool = True
) -> FileCorpus:
    """IEMOCAP: labels from ``Session*/dialog/EmoEvaluation/*.txt``, audio from
    ``Session*/sentences/wav/<dialog>/<utterance>.wav``.

    The usual four classes (excited merged into happy; with ``merge_excited=False`` a fifth
    class ``excited``, as label sets read it); other labels are excluded. The speaker is the
    session plus the gender letter of the utterance, e.g. ``Ses01M``.
    """
    root = check_root(root, "IEMOCAP", IEMOCAP_EXAMPLE)
    scan = CorpusScan("iemocap", "IEMOCAP", skip_bad_files)
    sessions = sorted(p for p in root.rglob("Session[1-5]") if p.is_dir())
    for session in sessions:
        for label_file in sorted((session / "dialog" / "EmoEvaluation").glob("*.txt")):
            lines = label_file.read_text(errors="replace").splitlines()
            for number, line in enumerate(lines, start=1):
                if not line.startswith("["):
                    continue
                m = IEMOCAP_LINE_RE.match(line)
                if m is None:
                    scan.bad(
                        label_file, f"unparsable label line {line!r}; expected {IEMOCAP_EXAMPLE}"
                    )
                    continue
                utterance, code = m.group(3), m.group(4)
                um = IEMOCAP_UTT_RE.match(utterance)
                dialog = utterance.rsplit("_", 1)[0]
                wav = session / "sentences" / "wav" / dialog / f"{utterance}.wav"
                if um is None:
                    scan.bad(label_file, f"utterance id {utterance!r} outside the IEMOCAP naming")
                elif code not in IEMOCAP_EMOTIONS:
                    scan.exclude(wav, f"IEMOCAP label {code!r} outside the four classes")
                elif not wav.is_file():
                    scan.bad(
                        wav,
                        f"audio file listed in {label_file.name} does not exist",
                        missing=True,
                    )
                else:
                    speaker = f"Ses{um.group(1)}{um.group(3)}"
                    where = f"{label_file}, line {number}"
                    label = "excited" if code == "exc" and not merge_excited else None
                    scan.add(wav, label or IEMOCAP_EMOTIONS[code], speaker, utterance, where)
    classes = IEMOCAP_CLASSES if merge_excited else IEMOCAP_LABEL_SET_CLASSES
    return scan.finish(root, IEMOCAP_EXAMPLE, classes)


def session_of(speaker: str) -> str:
    """``Ses01F`` -> ``Ses01``: the session of an IEMOCAP speaker."""
    return speaker[:5]


register_corpus(
    CorpusSpec(
        "iemocap",
        scan_iemocap,
        speaker_groups(session_of, "sessions"),
        classes=IEMOCAP_CLASSES,
        label_set_scan={"merge_excited": False},
    )
)
