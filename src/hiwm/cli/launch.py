"""``hiwm launch <name> [arg:=value ...]``: run a launch file's graph as processes, without ROS.

The graph comes from ``launch/<name>.launch.py``, the same file ``ros2 launch hiwm`` reads.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from hiwm.launch.graph import STOP_GRACE_S, Graph, GraphError, parse_overrides
from hiwm.launch.supervisor import EXIT_USAGE, Supervisor, available_graphs, load_graph, plan


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=float, help="stop the graph after this many seconds")
    p.add_argument("--show-args", action="store_true", help="print the graph's launch arguments and exit")
    p.add_argument("--dry-run", action="store_true", help="print each node's command line and exit")
    p.add_argument("--list", action="store_true", help="list the available launch files and exit")
    p.add_argument(
        "--grace",
        type=float,
        default=STOP_GRACE_S,
        help=f"seconds after SIGINT before SIGTERM (default {STOP_GRACE_S:g})",
    )


def _listing() -> str:
    lines = ["available launch files:"]
    for name in available_graphs():
        try:
            lines.append(f"  {name:<20} {load_graph(name).description}")
        except GraphError as exc:
            lines.append(f"  {name:<20} (broken: {exc})")
    return "\n".join(lines)


def _show_args(graph: Graph) -> str:
    lines = [f"{graph.name}: {graph.description}", "arguments:" if graph.args else "arguments: none"]
    for a in graph.args:
        choices = f" {{{', '.join(a.choices)}}}" if a.choices else ""
        given = f"{a.name}:={a.default_text or repr('')}"
        lines.append(f"  {given:<24} {a.description}{choices}")
    return "\n".join(lines)


def cmd_launch(args: argparse.Namespace) -> int:
    # Options after the overrides (`demo a:=1 --duration 3`) arrive in `rest`: parse them here.
    extra = argparse.ArgumentParser(prog="hiwm launch", add_help=False)
    _add_options(extra)
    extra.add_argument("overrides", nargs="*")
    extra.parse_intermixed_args(args.rest, namespace=args)
    if args.list or not args.name:
        print(_listing())
        return 0 if args.list else EXIT_USAGE
    try:
        graph = load_graph(args.name)
        if args.show_args:
            print(_show_args(graph))
            return 0
        nodes = plan(graph, parse_overrides(args.overrides))
    except GraphError as exc:
        print(f"hiwm launch: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.dry_run:
        for node in nodes:
            print(f"[{node.label}] {shlex.join(node.argv)}")
        return 0
    return Supervisor(nodes, duration=args.duration, sigint_grace=args.grace).run()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "launch",
        help="run a launch file's graph as processes (no ROS needed)",
        description="Run launch/<name>.launch.py as supervised processes: the graph `ros2 launch hiwm` starts.",
    )
    p.add_argument("name", nargs="?", help="launch file name (e.g. demo) or path to a .launch.py file")
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="arg:=value", help="launch argument overrides")
    _add_options(p)
    p.set_defaults(func=cmd_launch)
