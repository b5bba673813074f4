"""``hiwm``: the command line. Each subcommand lives in its own module with ``register``."""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that add subcommands: each has register(subparsers) setting `func` on its parsers.
COMMAND_MODULES = [
    "hiwm.cli.topic",
    "hiwm.cli.launch",
    "hiwm.cli.train",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hiwm", description="Human-in-the-world-model robot post-training on ROS 2.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
