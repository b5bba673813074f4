"""``hiwm branches ls | show | tree | export | check``: the branch cache store, offline.

They open the store file read-only, so they work while the branch cache node is writing it.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone

from hiwm.branch_cache.store import BranchStore

DEFAULT_DB = "branch_cache.db"


def _open(args: argparse.Namespace, check: str | None = "refs") -> BranchStore:
    # references only: SQLite's page scan takes seconds on a big store (`check` runs it)
    return BranchStore(args.db, readonly=True, check=check)


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def cmd_ls(args: argparse.Namespace) -> int:
    with _open(args) as store:
        if args.session is None:
            items = store.sessions()
            if args.json:
                print(json.dumps([s.to_json() for s in items], indent=2))
                return 0
            print(f"{'session':<24} {'created (UTC)':<20} {'branches':>8} {'nodes':>7}  cursor")
            for s in items:
                cursor = f"{s.cursor_node} on {s.cursor_branch}"
                print(f"{s.id:<24} {_when(s.created):<20} {s.branches:>8} {s.nodes:>7}  {cursor}")
            return 0
        items = store.branches(args.session)
        if args.json:
            print(json.dumps([b.to_json() for b in items], indent=2))
            return 0
        print(f"{'branch':<8} {'parent':<8} {'fork at':<9} {'head':<9} {'nodes':>6}  labels")
        for b in items:
            print(
                f"{b.id:<8} {b.parent_branch or '-':<8} {b.base_node or '-':<9} {b.head_node or '-':<9} "
                f"{b.length:>6}  {', '.join(b.labels)}"
            )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with _open(args) as store:
        ident = args.id
        if ident[:1] == "n" and ident[1:].isdigit():
            node = store.get(ident)
            doc = {**node.to_json(), "children": [c.id for c in store.children(ident)]}
            doc["snapshot_bytes"] = len(store.snapshot(ident))
        elif ident[:1] == "b" and ident[1:].isdigit():
            doc = {
                **store.branch(ident).to_json(),
                "ancestry": [b.id for b in store.lineage(ident)],
                "nodes": [
                    f"{n.id} step {n.step} {n.source_name} {n.action}" + (f" {n.labels}" if n.labels else "")
                    for n in store.nodes(ident)
                ],
            }
        else:
            doc = {**store.session(ident).to_json(), "branches": [b.id for b in store.branches(ident)]}
        print(json.dumps(doc, indent=2))
    return 0


def cmd_tree(args: argparse.Namespace) -> int:
    from hiwm.branch_cache.render import render_tree, text_tree

    with _open(args) as store:
        sessions = [args.session] if args.session else [s.id for s in store.sessions()]
        for i, session in enumerate(sessions):
            print(text_tree(store, session))
            if args.output:
                out = args.output if len(sessions) == 1 else args.output.replace(".png", f"-{i}.png")
                print(f"wrote {render_tree(store, session, out)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from hiwm.branch_cache.export import export_branches

    with _open(args) as store:
        result = export_branches(
            store, args.branches, args.output, fps=args.fps, task=args.task, instruction=args.instruction,
            segment=args.segment,
        )  # fmt: skip
    print(
        f"{result.root}: wrote {result.episodes} episodes, {result.frames} frames (episodes {result.episode_indices})"
    )
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    store = BranchStore(args.db, readonly=True, check=None)
    with store:
        report = store.check(full=args.full)
    print(report)
    return 0 if report.ok else 1


def register(sub: argparse._SubParsersAction) -> None:
    from hiwm.branch_cache.export import DEFAULT_INSTRUCTION, SEGMENTS
    from hiwm.tasks import DEFAULT_TASK, task_names

    top = sub.add_parser("branches", help="inspect, draw and export the branch cache store (offline)")
    bsub = top.add_subparsers(dest="branches_command", required=True, metavar="SUBCOMMAND")

    def parser(name: str, text: str) -> argparse.ArgumentParser:
        p = bsub.add_parser(name, help=text)
        p.add_argument("--db", default=DEFAULT_DB, help=f"store file (default {DEFAULT_DB})")
        return p

    p = parser("ls", "sessions, or the branches of a session")
    p.add_argument("session", nargs="?")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ls)

    p = parser("show", "one session, branch (b..) or node (n..) as JSON")
    p.add_argument("id")
    p.set_defaults(func=cmd_show)

    p = parser("tree", "a session's tree as text, and as a PNG with -o")
    p.add_argument("session", nargs="?", help="default: every session")
    p.add_argument("-o", "--output", help="PNG path")
    p.set_defaults(func=cmd_tree)

    p = parser("export", "branches -> episodes of a LeRobot v3 dataset (appends if it exists)")
    p.add_argument("branches", nargs="+", help="branch ids (b..)")
    p.add_argument("-o", "--output", required=True, help="dataset folder")
    p.add_argument("--fps", type=int, help="dataset frame rate (default: the task's control rate)")
    p.add_argument("--task", choices=task_names(), default=DEFAULT_TASK, help="the task the sessions act in")
    p.add_argument("--instruction", default=DEFAULT_INSTRUCTION,
                   help="the episodes' language task (default: the task world's)")  # fmt: skip
    p.add_argument("--segment", choices=SEGMENTS, default="trajectory",
                   help="trajectory: from the session start; branch: from the fork node; correction: the "
                   "fork node through the last human action")  # fmt: skip
    p.set_defaults(func=cmd_export)

    p = parser("check", "integrity report (exit 1 on problems)")
    p.add_argument("--full", action="store_true", help="also rehash every blob")
    p.set_defaults(func=cmd_check)
