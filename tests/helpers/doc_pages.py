"""The documentation's pages and their code blocks, for the tests that run what they show."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"

_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def pages() -> list[Path]:
    """README.md and every page of the site (the results' summaries are outputs, not pages)."""
    site = [
        p for p in sorted(DOCS.rglob("*.md")) if p.name != "summary.md" and "_build" not in p.parts
    ]
    return [REPO / "README.md", *site]


def section(page: str, heading: str) -> str:
    """The text of ``docs/<page>`` (or README.md) from the heading that starts with ``heading``."""
    text = (REPO / page).read_text() if page == "README.md" else (DOCS / page).read_text()
    return text[re.search(f"^{re.escape(heading)}", text, re.M).start() :]


def first_block(text: str, language: str) -> str:
    """The first fenced block of ``language`` in ``text``."""
    return next(code for lang, code in _BLOCK.findall(text) if lang == language)


def code_blocks(path: Path) -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced block of a page, in order."""
    return _BLOCK.findall(path.read_text())


def shell_commands(code: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, comments and blanks dropped."""
    joined = code.replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            commands.append(line)
    return commands
