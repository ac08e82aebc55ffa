"""The errors for data the user must fix: unreadable or unusable files, splits that cannot be
filled. The CLI reports them as one line and a non-zero exit, like a configuration error."""

from __future__ import annotations

from collections.abc import Sequence

#: Bad files named in one message; the rest are counted.
SHOWN_FILES = 5


class DataError(ValueError):
    """The corpus on disk cannot give what the configuration asks for.

    Its message says what was wrong (which files, how many, where the full list is) and what
    was expected, so that it reads well as the only line a user sees.
    """


class MissingFilesError(DataError, FileNotFoundError):
    """Files that a corpus lists (a manifest row, an IEMOCAP label line) are not on disk."""


def name_files(problems: Sequence[tuple[str, str]], shown: int = SHOWN_FILES) -> str:
    """``path: reason`` of the first ``shown`` problems, then how many more there are."""
    text = "; ".join(f"{path}: {reason}" for path, reason in problems[:shown])
    if len(problems) > shown:
        text += f"; and {len(problems) - shown} more"
    return text
