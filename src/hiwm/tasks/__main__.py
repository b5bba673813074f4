"""List the registered tasks: ``python -m hiwm.tasks`` (names) or ``python -m hiwm.tasks --json``."""

from __future__ import annotations

import argparse
import json

from hiwm.tasks import get_task, task_names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hiwm.tasks", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print a JSON list of the tasks' summaries")
    args = parser.parse_args(argv)
    if args.json:
        print(json.dumps([get_task(name).summary() for name in task_names()], indent=2))
        return
    for name in task_names():
        task = get_task(name)
        cams = ", ".join(f"{c.name} {c.width}x{c.height}" for c in task.cameras)
        print(f"{name:12s} action_dim {task.action_dim}  {task.fps:g} Hz  cameras: {cams}  {task.description}")


if __name__ == "__main__":
    main()
