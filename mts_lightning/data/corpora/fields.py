"""The generic scanner of corpora whose file names hold the label and speaker in fixed fields.

A :class:`NamingScheme` says how a file name (its stem) is cut: a regular expression with the
named groups ``speaker`` and ``emotion``, and the table from emotion code to class name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .base import CorpusScan, FileCorpus, audio_files, check_root


@dataclass(frozen=True)
class NamingScheme:
    """How the names of one corpus's files encode their speaker and emotion.

    Args:
        name: the registered corpus name.
        display: the corpus's name in messages (``"CREMA-D"``).
        pattern: matches a file's stem, with named groups ``speaker`` and ``emotion``.
        emotions: emotion code -> class name; the distinct names, in order, are the classes.
        example: a valid file name and what its fields mean, for messages.
        ignore_case: codes and speakers match in any case (codes are compared lowercase,
            speakers uppercase, and two files whose names differ in case only are copies).
    """

    name: str
    display: str
    pattern: re.Pattern[str]
    emotions: Mapping[str, str]
    example: str
    ignore_case: bool = False

    def __post_init__(self) -> None:
        missing = {"speaker", "emotion"} - set(self.pattern.groupindex)
        if missing:
            raise ValueError(f"{self.display}: pattern lacks the named group(s) {sorted(missing)}")

    @property
    def classes(self) -> tuple[str, ...]:
        """The class names in the order of the emotion codes (aliases counted once)."""
        return tuple(dict.fromkeys(self.emotions.values()))

    def scan(self, root: str | Path | None, skip_bad_files: bool = False) -> FileCorpus:
        """Every audio file under ``root`` whose name follows the scheme, as a clip."""
        folder = check_root(root, self.display, self.example)
        scan = CorpusScan(self.name, self.display, skip_bad_files)
        flags = re.IGNORECASE if self.ignore_case else 0
        pattern = re.compile(self.pattern.pattern, self.pattern.flags | flags)
        for path in audio_files(folder, scan):
            match = pattern.match(path.stem)
            code = match["emotion"] if match else None
            speaker = match["speaker"] if match else None
            if self.ignore_case and match:
                code, speaker = code.lower(), speaker.upper()
            if code not in self.emotions:
                scan.bad(
                    path,
                    f"file name outside the {self.display} convention; expected {self.example} "
                    f"with emotion one of {', '.join(self.emotions)}",
                )
                continue
            uid = path.stem.lower() if self.ignore_case else path.stem
            scan.add(path, self.emotions[code], speaker, uid)
        return scan.finish(folder, self.example, self.classes)
