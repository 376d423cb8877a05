"""`cinecube ...`: wires the subcommands of `cinecube.commands` into one parser.

    cinecube generate PROMPT [--frames --height --width --steps --guidance --seed --model -o]
    cinecube train --preset tiny --world shapes --steps N --out runs/NAME [--resume]
    cinecube eval adherence --model M [--n 120 --out adherence.json]
    cinecube export CHECKPOINT --out FOLDER [--dtype bfloat16]
    cinecube verify FILE

Errors the user can fix print one line (`error: ...`) and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from typing import NoReturn

# OpenMP threads that spin while waiting slow every op many times over as soon as another
# process wants a core (docs/performance.md); passive waiting costs little when the machine is
# idle. Must be set before torch is imported; a value in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .errors import CinecubeError

# The modules of cinecube.commands, in the order `cinecube --help` lists their commands. Each
# defines `register(commands, eval_commands)`, adding its parsers to `cinecube ...` and/or to
# `cinecube eval ...`.
COMMAND_MODULES = (
    "generate",
    "prompting",
    "train",
    "export",
    "evaluation",
    "verify",
    "footage",
    "autoencoder_training",
    "detector",
    "serve",
)


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a bad argument reported like every other error: one line, status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="cinecube", description="Sora-style text-to-video.")
    commands = parser.add_subparsers(dest="command", required=True)
    eval_commands = commands.add_parser("eval", help="evaluate a model").add_subparsers(dest="what", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"cinecube.commands.{name}").register(commands, eval_commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit:  # argparse's own one-line errors (status 2) and --help (0)
        return exit.code if isinstance(exit.code, int) else 2
    try:
        return args.func(args)
    except CinecubeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`cinecube verify x.mp4 | head`): stop quietly, as a command
        # killed by SIGPIPE would. Python would complain again flushing stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
