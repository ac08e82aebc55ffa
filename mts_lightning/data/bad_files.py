"""The bad files met while a corpus is read: one error naming the first few, or, when the
user allows skipping, a record of each file and one report of those not yet reported."""

from __future__ import annotations

from collections.abc import Sequence

from lightning.pytorch.utilities import rank_zero_warn

from .audio import BadAudioError
from .corpora import SkippedFile
from .errors import DataError, name_files


class BadFiles:
    """The bad files of one corpus under one policy (``skip``)."""

    def __init__(self, corpus: str, skip: bool) -> None:
        self.corpus = corpus
        self.skip = skip
        self.skipped: list[SkippedFile] = []
        #: Classes the training split has no clip of once bad files are left out.
        self.lost_classes: list[str] = []
        self._reported = 0

    def handle(self, bad: Sequence[SkippedFile]) -> None:
        """Raise one :class:`BadAudioError` for ``bad`` files, or record them when skipping."""
        if not bad:
            return
        if self.skip:
            self.record(bad)
            return
        hint = "(set skip_bad_files=True to skip such files)"
        if len(bad) == 1:
            raise BadAudioError(bad[0].path, f"{bad[0].reason} {hint}")
        problems = [(s.path, s.reason) for s in bad]
        raise BadAudioError(
            bad[0].path,
            f"{bad[0].reason}; {len(bad)} files cannot be used: {name_files(problems)} {hint}",
        )

    def record(self, skipped: Sequence[SkippedFile]) -> None:
        """Remember skipped files (each file once)."""
        known = {s.path for s in self.skipped}
        self.skipped += [s for s in skipped if s.path not in known]

    def report(self) -> None:
        """Warn about the files skipped since the last report, and the classes lost."""
        new = self.skipped[self._reported :]
        self._reported = len(self.skipped)
        if not new:
            return
        lines = "\n".join(f"  {s.path}: {s.reason}" for s in new)
        lost = ""
        if self.lost_classes:
            lost = (
                "\nThe training split has no clip left of class(es) "
                f"{', '.join(self.lost_classes)}: the model cannot learn them."
            )
        rank_zero_warn(
            f"{self.corpus}: skipped {len(new)} bad files (skip_bad_files=True):\n{lines}{lost}"
        )

    def nothing_left(self, missing: str, listed_in: str | None) -> DataError:
        """The error for a corpus or split that skipping left without what it needs: how many
        files were skipped, where their list is (``listed_in``, else the report), and what is
        ``missing``."""
        self.report()
        skipped = ""
        if self.skipped:
            where = listed_in or "the warning above"
            skipped = f", after skipping {len(self.skipped)} bad files (listed in {where})"
        return DataError(
            f"{self.corpus}: {missing}{skipped}; fix or replace those files, or choose another "
            "split or fold"
        )
