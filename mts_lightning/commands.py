"""The ``mts-lightning`` command line: one table of commands, each a name, a line saying what it
does and the function that runs it with the arguments after its name.

``mts-lightning --help`` lists them all; ``mts-lightning COMMAND --help`` gives a command's own
options. A missing or unknown command is one line naming it, then the list, exit status 2::

    mts-lightning fit --config configs/synthetic.yaml
    mts-lightning timeline --ckpt_path best.ckpt long_recording.wav --plot
    mts-lightning experiment collect experiments/tempo

``fit``, ``validate``, ``test`` and ``predict`` are :class:`~mts_lightning.cli.MTSLightningCLI`'s
subcommands; options placed before them (``mts-lightning --config FILE fit``) go to it too.
``predict --timeline`` is another spelling of ``timeline``, kept for the commands written
with it. A command's module is imported only when it runs, so ``--help`` answers at once.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple

PROG = "mts-lightning"
#: The LightningCLI subcommands (``MTSLightningCLI``); the rest of the table is the project's.
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


class Command(NamedTuple):
    """One command: its ``summary`` is its line in ``mts-lightning --help``; ``run`` takes the
    arguments after its name, and ``from_command_line`` says whether they are ``sys.argv``'s."""

    summary: str
    run: Callable[[list[str], bool], object]


def _lightning_cli(args: list[str], from_command_line: bool) -> object:
    """``MTSLightningCLI`` on ``args``, its subcommand included."""
    from mts_lightning.cli import cli_main

    # From the command line LightningCLI reads sys.argv itself (given both, it warns).
    return cli_main(None if from_command_line else args)


def _lightning(name: str) -> Callable[[list[str], bool], object]:
    return lambda args, from_command_line: _lightning_cli([name, *args], from_command_line)


def _predict(args: list[str], from_command_line: bool) -> object:
    if "--timeline" in args:
        return _timeline(args, from_command_line)
    return _lightning("predict")(args, from_command_line)


def _timeline(args: list[str], from_command_line: bool) -> object:
    from mts_lightning.inference import timeline_main

    return timeline_main(args)


def _experiment(args: list[str], from_command_line: bool) -> object:
    from mts_lightning.experiment.command import main

    return main(args)


def _export(args: list[str], from_command_line: bool) -> object:
    from mts_lightning.export import export_main

    return export_main(args)


def _init_config(args: list[str], from_command_line: bool) -> object:
    from mts_lightning.init_config import init_config_main

    return init_config_main(args)


#: Every command, in the order ``--help`` lists them.
COMMANDS: dict[str, Command] = {
    "fit": Command("train a model (--config FILE; --ckpt_path resumes a run)", _lightning("fit")),
    "validate": Command("score a checkpoint on the validation split", _lightning("validate")),
    "test": Command("score a checkpoint on the test split (or another corpus)", _lightning("test")),
    "predict": Command(
        "classify audio files and folders with a checkpoint (--data.predict_paths)", _predict
    ),
    "timeline": Command(
        "classify long recordings window by window (also spelled 'predict --timeline')",
        _timeline,
    ),
    "experiment": Command(
        "run an experiment file's runs; also 'experiment run' (one), 'experiment collect DIR'",
        _experiment,
    ),
    "export": Command("write a checkpoint as an ONNX or TorchScript file", _export),
    "init-config": Command("copy the shipped configs out of the installed package", _init_config),
}


def usage() -> str:
    """The text of ``mts-lightning --help``: one line per command."""
    width = max(map(len, COMMANDS))
    lines = [
        f"usage: {PROG} COMMAND [OPTIONS]",
        "",
        "Multi-time-scale convolution and speech emotion recognition on Lightning.",
        "",
        "commands:",
        *(f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()),
        "",
        f"A command's options: {PROG} COMMAND --help",
    ]
    return "\n".join(lines) + "\n"


def _refuse(problem: str) -> None:
    sys.stderr.write(f"{PROG}: error: {problem}\n\n{usage()}")
    sys.exit(2)


def main(args: Sequence[str] | None = None) -> None:
    """Run the command named by ``args[0]`` (default: ``sys.argv[1:]``) with the rest: the
    entry point of ``mts-lightning`` and ``python -m mts_lightning``."""
    from_command_line = args is None
    args = sys.argv[1:] if args is None else list(args)
    if not args:
        return _refuse(f"a command is required, one of {', '.join(COMMANDS)}")
    name = args[0]
    if name in ("-h", "--help"):
        sys.stdout.write(usage())
        return None
    if name.startswith("-"):
        # Options before a LightningCLI subcommand (--config FILE fit) are LightningCLI's own.
        if any(arg in LIGHTNING_COMMANDS for arg in args):
            _lightning_cli(args, from_command_line)
            return None
        return _refuse(f"a command is required, one of {', '.join(COMMANDS)}")
    command = COMMANDS.get(name)
    if command is None:
        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return _refuse(f"unknown command '{name}'{hint}")
    command.run(args[1:], from_command_line)
    return None
