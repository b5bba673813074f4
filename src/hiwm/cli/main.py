"""``hiwm``: the command line. Each subcommand lives in its own module with ``register``."""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that add subcommands: each has register(subparsers) setting `func` on its parsers.
COMMAND_MODULES = [
    "hiwm.cli.tasks",
    "hiwm.cli.topic",
    "hiwm.cli.launch",
    "hiwm.cli.data",
    "hiwm.cli.branches",
    "hiwm.cli.leader",
    "hiwm.cli.train",
    "hiwm.cli.eval",
    "hiwm.cli.experiment",
    "hiwm.cli.models",
]


# Errors that mean bad input, a bad file or a missing peer rather than a bug: one line and exit 2
# (tracebacks with --debug). Named by module so that `hiwm --help` imports neither torch nor DDS;
# an error class whose module was never imported cannot have been raised.
EXPECTED_ERRORS = [
    ("hiwm.checkpoints", "CheckpointError"),
    ("hiwm.branch_cache.store", "BranchCacheError"),
    ("hiwm.data.lerobot", "DatasetError"),
    ("hiwm.data.bag", "BagError"),
    ("hiwm.data.video", "VideoError"),
    ("hiwm.leader.bus", "BusError"),
    ("hiwm.comm.node", "ServiceCallError"),
]
USAGE_ERROR = 2


def expected_error(exc: BaseException) -> bool:
    if isinstance(exc, (ValueError, OSError)):  # bad arguments or files (our ValueError subclasses included)
        return True
    for module, name in EXPECTED_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(exc, cls):
            return True
    return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hiwm", description="Human-in-the-world-model robot post-training on ROS 2.")
    parser.add_argument("--debug", action="store_true", help="show the whole traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv  # also after the subcommand, where argparse would not take it
    args = parser.parse_args([a for a in argv if a != "--debug"])
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:  # a subcommand's own one-line refusal
        if debug or exc.code is None or isinstance(exc.code, int):
            raise
        print(exc.code, file=sys.stderr)
        return USAGE_ERROR
    except Exception as exc:
        if debug or not expected_error(exc):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"hiwm {args.command}: error: {message}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
