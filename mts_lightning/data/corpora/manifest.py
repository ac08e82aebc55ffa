"""Any other corpus: a CSV manifest with ``path,label[,speaker]`` columns."""

from __future__ import annotations

import csv
from pathlib import Path

from .base import CorpusScan, FileCorpus, check_root
from .protocols import speaker_window
from .registry import CorpusSpec, register_corpus

MANIFEST_EXAMPLE = "a CSV with a header 'path,label[,speaker]', paths relative to the CSV"


def _read_manifest(root: str | Path | None) -> tuple[Path, list[dict[str, str]]]:
    path = check_root(root, "manifest", MANIFEST_EXAMPLE)
    if not path.is_file():
        raise ValueError(f"manifest: '{path}' is a folder; `root` must be {MANIFEST_EXAMPLE}")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in ("path", "label") if c not in columns]
        if missing:
            raise ValueError(
                f"manifest '{path}': missing column(s) {', '.join(missing)}; found columns "
                f"{columns or 'none'}; expected {MANIFEST_EXAMPLE}"
            )
        rows = []
        for line, row in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            if not row["path"] or not row["label"]:
                raise ValueError(f"manifest '{path}', line {line}: empty path or label")
            row["line"] = str(line)
            rows.append(row)
    if not rows:
        raise FileNotFoundError(f"manifest '{path}' lists no files; expected {MANIFEST_EXAMPLE}")
    return path, rows


def scan_manifest(root: str | Path | None, skip_bad_files: bool = False) -> FileCorpus:
    """A CSV manifest with ``path,label[,speaker]`` columns; classes are the sorted labels of
    the clips kept.

    Paths are compared once resolved: a file listed twice with the same label is kept once
    (reported), with two different labels it is refused, naming both lines.
    """
    path, rows = _read_manifest(root)
    scan = CorpusScan("manifest", f"manifest '{path}'", skip_bad_files)
    for row in rows:
        audio = Path(row["path"]).expanduser()
        audio = (audio if audio.is_absolute() else path.parent / audio).resolve()
        if not audio.is_file():
            scan.bad(audio, f"listed on line {row['line']} but does not exist", missing=True)
            continue
        where = f"line {row['line']}"
        scan.add(audio, row["label"], row.get("speaker") or None, str(audio), where)
    return scan.finish(path, MANIFEST_EXAMPLE, None)


register_corpus(CorpusSpec("manifest", scan_manifest, speaker_window))
