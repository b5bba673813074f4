"""``hiwm tasks``: the registered tasks, one line each, or their summaries as JSON (``--json``)."""

from __future__ import annotations

import argparse
import json

from hiwm.tasks import get_task, task_names


def run(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps([get_task(name).summary() for name in task_names()], indent=2))
        return 0
    for name in task_names():
        task = get_task(name)
        cams = ", ".join(f"{c.name} {c.width}x{c.height}" for c in task.cameras)
        print(f"{name:12s} action_dim {task.action_dim}  {task.fps:g} Hz  cameras: {cams}  {task.description}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("tasks", help="list the tasks (action space, cameras, rate)", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print a JSON list of the tasks' summaries")
    parser.set_defaults(func=run)
