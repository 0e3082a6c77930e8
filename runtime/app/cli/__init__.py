"""The ``vlart`` command: one entry point, one subcommand per job, grouped in one module per domain (``policy``,
``serving``, ``evaluation``, ``data``, ``robot``); the model options they share are defined once in ``common``.

Heavy imports (torch, transformers) happen inside the subcommands, so ``vlart --help`` is instant and the robot
side never pays for them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from typing import Callable, Optional, Sequence

from runtime.app.cli import data, evaluation, policy, robot, serving, sweep

# No code path may reach a model hub: everything is built from configs or read from local files.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlart", description="A runtime for vision-language-action robot policies.")
    chatter = parser.add_mutually_exclusive_group()
    chatter.add_argument("--verbose", action="store_true", help="log progress (INFO)")
    chatter.add_argument("--debug", action="store_true",
                         help="log everything (DEBUG) and print the full traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (policy, serving, robot, evaluation, sweep, data):
        group.register(commands)
    return parser


def configure_logging(args: argparse.Namespace) -> None:
    """--debug, --verbose, else the command's own level (a server logs INFO); no level leaves Python's default."""
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else getattr(args, "log_level", None)
    if level is not None:
        logging.basicConfig(level=level, format=LOG_FORMAT)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (ValueError, OSError, RuntimeError) as exc:
        if args.debug:
            traceback.print_exc()
        hint = "" if args.debug else " (--debug for the traceback)"
        print(f"vlart {args.command}: error: {exc}{hint}", file=sys.stderr)
        return 2
