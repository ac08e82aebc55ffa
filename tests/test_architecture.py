"""ARCHITECTURE.md holds for the whole package: every import goes down the floors of its table
(or stays in its room), no module reaches another's private names, every file of the package
is named in the tree, every room has its floor, and every path the "where a new piece goes"
table names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "mts_lightning"
ARCHITECTURE = (REPO / "ARCHITECTURE.md").read_text()


def floors(text: str = ARCHITECTURE) -> dict[str, int]:
    """``{room: floor}`` from the ``| floor | rooms |`` table of ARCHITECTURE.md."""
    table = re.search(r"^\| floor \| rooms \|\n\|[-|]+\|\n((?:\|.*\|\n)+)", text, re.M)
    assert table, "ARCHITECTURE.md has no '| floor | rooms |' table"
    found = {}
    for row in table.group(1).splitlines():
        floor, rooms = (cell.strip() for cell in row.strip("|").split("|"))
        for room in re.findall(r"`([\w.]+)`", rooms):
            assert room not in found, f"room {room} is on two floors of ARCHITECTURE.md"
            found[room] = int(floor)
    return found


def module_name(path: Path) -> str:
    """``mts_lightning/data/__init__.py`` -> ``mts_lightning.data``."""
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room(module: str) -> str:
    """The room of a module: its folder under the package, or its own name at the top;
    ``__init__`` for the package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
FLOORS = floors()


def imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """``(line, module, names)`` of every import of the package in ``path`` (function bodies
    included), relative imports resolved; ``from a import b`` counts as importing ``a.b``
    when ``b`` is a module, so that its room and its private names are checked too."""
    package = (
        module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    )
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            names = [alias.name for alias in node.names]
            submodules = [f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES]
            found.append(
                (node.lineno, module, [n for n in names if f"{module}.{n}" not in MODULES])
            )
            found += [(node.lineno, sub, []) for sub in submodules]
    return [(line, m, names) for line, m, names in found if m.split(".")[0] == "mts_lightning"]


def module_aliases(path: Path) -> dict[str, str]:
    """Local names bound to modules of the package (``from mts_lightning.experiment import
    stats`` binds ``stats``; ``import mts_lightning.io as io`` binds ``io``)."""
    aliases = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            for alias in node.names:
                if f"{node.module}.{alias.name}" in MODULES:
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and alias.name in MODULES:
                    aliases[alias.asname] = alias.name
    return aliases


def test_every_room_has_one_floor():
    rooms = {room(m) for m in MODULES}
    assert not sorted(rooms - set(FLOORS)), "rooms missing from ARCHITECTURE.md's floor table"
    assert not sorted(set(FLOORS) - rooms), "rooms in ARCHITECTURE.md that the package lacks"


def upward_imports(module: str) -> list[str]:
    """Each import of ``module`` that goes up or sideways, with its file, line and floors."""
    here = room(module)
    wrong = []
    for line, imported, _ in imports(MODULES[module]):
        there = room(imported)
        if there != here and FLOORS[there] >= FLOORS[here]:
            way = "sideways" if FLOORS[there] == FLOORS[here] else "upwards"
            wrong.append(
                f"{MODULES[module].relative_to(REPO)}:{line} imports {imported} {way} "
                f"({here} is on floor {FLOORS[here]}, {there} on floor {FLOORS[there]})"
            )
    return wrong


def private_uses(module: str) -> list[str]:
    """Each private name of another module that ``module`` imports or reads."""
    path = MODULES[module]
    wrong = [
        f"{path.relative_to(REPO)}:{line} imports {name} from {imported}"
        for line, imported, names in imports(path)
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    aliases = module_aliases(path)
    wrong += [
        f"{path.relative_to(REPO)}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in aliases
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
    ]
    return wrong


def test_imports_go_down_the_floors():
    wrong = [problem for module in MODULES for problem in upward_imports(module)]
    assert len(MODULES) > 70
    assert not wrong, "imports against ARCHITECTURE.md's floors:\n" + "\n".join(wrong)


def test_no_module_reaches_another_modules_private_names():
    wrong = [problem for module in MODULES for problem in private_uses(module)]
    assert not wrong, "private names used across modules:\n" + "\n".join(wrong)


def tree_entries(text: str = ARCHITECTURE) -> dict[str, str]:
    """The tree of ARCHITECTURE.md: ``{head: text}`` per entry (``nn/``, ``io.py``, ...), an
    entry being a line indented by two spaces and the lines indented deeper below it."""
    block = re.search(r"```\nmts_lightning/\n(.*?)```", text, re.S)
    assert block, "ARCHITECTURE.md has no tree of mts_lightning/"
    entries: dict[str, str] = {}
    head = None
    for line in block.group(1).splitlines():
        if re.match(r"  \S", line):
            head, _, rest = line.strip().partition("  ")
            entries[head] = rest
        else:
            entries[head] += " " + line.strip()
    return entries


def files_named_by(entries: dict[str, str]) -> dict[str, set[str]]:
    """``{room: file names}`` as the tree names them: a folder's entry names its files in its
    text; a top-level entry names its modules in its head (``a.py, b.py``)."""
    named: dict[str, set[str]] = {}
    for head, text in entries.items():
        if head.endswith("/"):
            named[head[:-1]] = set(re.findall(r"\b[\w]+\.(?:py|c)\b", text))
        for name in re.findall(r"\b([\w]+)\.py\b", head):
            named[name] = {f"{name}.py"}
    return named


def test_every_file_of_the_package_is_named_in_its_room():
    named = files_named_by(tree_entries())
    package_files = [
        p for p in PACKAGE.rglob("*") if p.suffix in (".py", ".c") and "configs" not in p.parts
    ]
    missing, stale = [], []
    for path in package_files:
        relative = path.relative_to(PACKAGE)
        if len(relative.parts) > 1 and path.name == "__init__.py":
            continue  # a folder's package marker: the folder is the room
        where = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        if path.name not in named.get(where, set()):
            missing.append(f"{relative} (room {where})")
    for where, names in named.items():
        folder = PACKAGE / where
        for name in names:
            if not (any(folder.rglob(name)) if folder.is_dir() else (PACKAGE / name).exists()):
                stale.append(f"{name} (room {where})")
    assert not missing, "files ARCHITECTURE.md's tree does not name:\n" + "\n".join(missing)
    assert not stale, "files ARCHITECTURE.md's tree names that do not exist:\n" + "\n".join(stale)


def test_every_path_of_the_new_piece_table_exists():
    section = ARCHITECTURE[ARCHITECTURE.index("## Where a new piece goes") :]
    paths = set(re.findall(r"`([\w/.-]+\.(?:py|md|yaml))`", section))
    missing = [
        p
        for p in sorted(paths)
        if not ((REPO / p).exists() or (PACKAGE / p).exists() or any(PACKAGE.rglob(p)))
    ]
    assert len(paths) > 10
    assert not missing, "paths in 'Where a new piece goes' that do not exist: " + ", ".join(missing)


def test_floor_check_names_the_offending_import(tmp_path, monkeypatch):
    """The checks themselves: an upward import (here in a function body) and a private name
    read through a module alias are reported with their file and line."""
    low = tmp_path / "mts_lightning" / "io.py"
    low.parent.mkdir()
    low.write_text("import os\n\n\ndef f():\n    from mts_lightning.cli import cli_main\n")
    monkeypatch.setitem(MODULES, "mts_lightning.io", low)
    monkeypatch.setitem(globals(), "REPO", tmp_path)
    assert upward_imports("mts_lightning.io") == [
        "mts_lightning/io.py:5 imports mts_lightning.cli upwards (io is on floor 0, cli on floor 4)"
    ]
    low.write_text("from mts_lightning.experiment import stats\n\nstats._cells\n")
    assert private_uses("mts_lightning.io") == [
        "mts_lightning/io.py:3 uses mts_lightning.experiment.stats._cells"
    ]


def test_atomic_writes_all_go_through_io():
    """One implementation of writing a file whole: no other module renames temporary files."""
    for path in PACKAGE.rglob("*.py"):
        if path.name != "io.py":
            text = path.read_text()
            assert "os.replace(" not in text and "mkstemp(" not in text, path
