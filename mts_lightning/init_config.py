"""``mts-lightning init-config``: the shipped configs, copied out of the installed package.

A package installed with pip has no ``configs/`` folder next to the user's work; it carries
the configs as package data (``mts_lightning/configs``, the repository's ``configs/``)::

    mts-lightning init-config                        # every config into ./configs
    mts-lightning init-config synthetic.yaml         # one file: ./configs/synthetic.yaml
    mts-lightning init-config ravdess my_configs     # a folder: my_configs/ravdess/*.yaml
    mts-lightning init-config --list                 # the names

Files keep their place in the tree, so the commands of the documentation
(``--config configs/synthetic.yaml``) work as written from the folder above ``DEST``, and an
experiment file is copied with the base configs it names (``configs: [../synthetic.yaml]``).
An existing file with other content is never overwritten without ``--force``; then nothing is
written at all.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib.resources import files
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import yaml

from mts_lightning.io import atomic_write

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

SUFFIX = ".yaml"


def shipped_configs() -> dict[str, Traversable]:
    """Every shipped config by its path inside the configs folder (``ravdess/modern.yaml``)."""
    found: dict[str, Traversable] = {}

    def walk(folder: Traversable, prefix: PurePosixPath) -> None:
        for entry in folder.iterdir():
            if entry.is_dir():
                walk(entry, prefix / entry.name)
            elif entry.name.endswith(SUFFIX):
                found[str(prefix / entry.name)] = entry

    walk(files("mts_lightning") / "configs", PurePosixPath())
    return dict(sorted(found.items()))


def _base_configs(name: str, text: str, shipped: dict[str, Traversable]) -> list[str]:
    """The shipped base configs an experiment file names (its ``configs:`` list)."""
    if not name.startswith("experiments/"):
        return []
    listed = (yaml.safe_load(text) or {}).get("configs") or []
    here = PurePosixPath(name).parent
    bases = []
    for entry in listed:
        parts: list[str] = []
        for part in (here / str(entry)).parts:  # resolve "..", which PurePath keeps
            if part == "..":
                parts = parts[:-1]
            elif part != ".":
                parts.append(part)
        base = "/".join(parts)
        if base in shipped:
            bases.append(base)
    return bases


def select(name: str | None, shipped: dict[str, Traversable]) -> list[str]:
    """The configs ``name`` stands for (a file, a folder, or everything), with the base
    configs of any experiment file among them."""
    if name is None:
        chosen = list(shipped)
    else:
        key = name.strip("/")
        chosen = [key] if key in shipped else [n for n in shipped if n.startswith(f"{key}/")]
        if not chosen:
            folders = sorted({n.split("/")[0] + "/" for n in shipped if "/" in n})
            roots = [n for n in shipped if "/" not in n]
            raise ValueError(
                f"NAME {name!r} is not a shipped config or folder; expected one of "
                f"{', '.join(roots + folders)} or a file in a folder (see --list)"
            )
    for config in list(chosen):
        for base in _base_configs(config, shipped[config].read_text(), shipped):
            if base not in chosen:
                chosen.append(base)
    return chosen


def copy_configs(name: str | None, dest: str | os.PathLike, force: bool = False) -> list[Path]:
    """Copy the configs ``name`` stands for into ``dest``, keeping their place in the tree.

    Returns the files written. Raises ``FileExistsError`` before writing anything when a
    target exists with other content and ``force`` is off, or is a folder.
    """
    shipped = shipped_configs()
    chosen = select(name, shipped)
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise FileExistsError(f"DEST {dest} is a file; expected a folder to copy the configs into")
    targets = {dest / config: shipped[config].read_bytes() for config in chosen}
    for target, content in targets.items():
        if target.is_dir() or (target.exists() and not force and target.read_bytes() != content):
            raise FileExistsError(
                f"{target} exists with other content; move it away or pass --force to overwrite"
            )
    written = []
    for target, content in targets.items():
        if target.is_file() and target.read_bytes() == content:
            continue
        # Written beside the target and renamed, so an interrupted copy leaves no half file.
        atomic_write(target, lambda out, content=content: out.write(content))
        written.append(target)
    return written


def init_config_main(argv: list[str]) -> None:
    """``mts-lightning init-config [NAME] [DEST] [--force] [--list]``; errors exit 2."""
    parser = argparse.ArgumentParser(
        prog="mts-lightning init-config",
        description="Copy the shipped configs out of the installed package.",
    )
    parser.add_argument(
        "name",
        nargs="?",
        metavar="NAME",
        help="a config (synthetic.yaml, ravdess/modern.yaml) or a folder (ravdess); default all",
    )
    parser.add_argument(
        "dest", nargs="?", default="configs", metavar="DEST", help="folder (default: configs)"
    )
    parser.add_argument("--force", action="store_true", help="overwrite files that differ")
    parser.add_argument("--list", action="store_true", help="print the shipped configs and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(shipped_configs()))
        return
    try:
        written = copy_configs(args.name, args.dest, force=args.force)
    except (ValueError, OSError) as err:  # FileExistsError is an OSError
        sys.stderr.write(f"mts-lightning init-config: error: {err}\n")
        sys.exit(2)
    count = len(written)
    print(
        f"mts-lightning init-config: {count} config{'s' * (count != 1)} written to {args.dest}"
        + ("" if count else " (every file was there already)")
    )
    for path in written:
        print(f"  {path}")
