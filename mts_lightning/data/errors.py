"""The error for data the user must fix: unreadable or unusable files, splits that cannot be
filled. The CLI reports it as one line and a non-zero exit, like a configuration error."""

from __future__ import annotations


class DataError(ValueError):
    """The corpus on disk cannot give what the configuration asks for.

    Its message says what was wrong (which files, how many, where the full list is) and what
    was expected, so that it reads well as the only line a user sees.
    """
