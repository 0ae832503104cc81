"""``otel-benchlab``: the console script. Chooses the command and runs it; each command
lives in ``otel_benchlab.commands``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from otel_benchlab.agent.heap import arrow_on_the_c_heap
from otel_benchlab.agent.no_pandas import pyarrow_without_pandas
from otel_benchlab.commands.logs import setup_logging
from otel_benchlab.commands.parsers import (
    SUBCOMMANDS,
    VIEW_COMMANDS,
    agent_parser,
    command_parser,
    gst_parser,
)
from otel_benchlab.settings import ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    arrow_on_the_c_heap()  # before pyarrow is imported: see heap.py
    with pyarrow_without_pandas():  # see no_pandas.py
        return _main(list(sys.argv[1:] if argv is None else argv))


def _main(argv: list[str]) -> int:
    if argv and argv[0] == "gst":
        rest = argv[1:]
        cut = rest.index("--") if "--" in rest else len(rest)
        args = gst_parser().parse_args(rest[:cut])
        from otel_benchlab.commands.gst import cmd_gst

        try:
            return cmd_gst(args, rest[cut + 1:])
        except ConfigError as exc:
            print(f"otel-benchlab: {exc}", file=sys.stderr)
            return 2
    if argv and argv[0] in VIEW_COMMANDS:
        module = importlib.import_module(f"otel_benchlab.commands.{argv[0]}")
        parser = getattr(module, f"{argv[0]}_parser")
        args = parser(f"otel-benchlab {argv[0]}").parse_args(argv[1:])
        setup_logging("text", "WARNING")
        try:
            return getattr(module, f"cmd_{argv[0]}")(args)
        except ConfigError as exc:
            print(f"otel-benchlab {argv[0]}: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:  # a store that is down or refuses, a file that cannot be read
            print(f"otel-benchlab {argv[0]}: {exc}", file=sys.stderr)
            return 1
    if argv and argv[0] in SUBCOMMANDS and argv[0] != "run":
        args = command_parser(argv[0]).parse_args(argv[1:])
    else:
        args = agent_parser().parse_args(argv[1:] if argv and argv[0] == "run" else argv)
    try:
        return _command(args.command)(args)
    except ConfigError as exc:
        print(f"otel-benchlab: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"otel-benchlab: {exc}", file=sys.stderr)
        return 1


def _command(name: str) -> Callable[[argparse.Namespace], int]:
    """The command's run function, from its own module (imported only when it runs)."""
    module = importlib.import_module(f"otel_benchlab.commands.{name}")
    return getattr(module, f"cmd_{name}")
