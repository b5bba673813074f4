"""``hiwm train``: training entry points. Each subcommand's options and logic live in its package."""

from __future__ import annotations

import argparse


def _world_model(args: argparse.Namespace) -> int:
    from hiwm.world_model.train import run

    return run(args)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train models")
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="MODEL")
    wm = kinds.add_parser("world-model", help="the action-conditioned world model and its state probe")
    from hiwm.world_model.train import add_arguments

    add_arguments(wm)
    wm.set_defaults(func=_world_model)
