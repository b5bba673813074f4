"""``hiwm eval``: a policy's real success in its task's world; the work is in :mod:`hiwm.policy.evaluate`."""

from __future__ import annotations

import argparse
import json


def cmd_eval(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from hiwm.policy.evaluate import EvalConfig, evaluate

    cfg = EvalConfig(
        policy=args.policy,
        policy_args=args.policy_args,
        seeds=args.seeds,
        episodes=args.episodes,
        workers=args.workers,
        max_steps=args.max_steps,
        videos=args.videos,
        out=args.out,
        threads=args.threads,
        task=args.task or "",
    )
    if args.world_model and args.both:  # the same seeds in both worlds, side by side
        out = Path(args.out) if args.out else None
        summaries = {}
        for world, ckpt in (("real", ""), ("model", args.world_model)):
            run = dataclasses.replace(cfg, world=ckpt, out=str(out / world) if out else None)
            summaries[world] = evaluate(run)
        rows = {w: {k: s[k] for k in ("episodes", "success_rate", "success_ci95", "mean_max_coverage")}
                for w, s in summaries.items()}  # fmt: skip
        print(f"{'world':6s} {'success':>8s} {'95 % CI':>14s} {'max coverage':>13s}")
        for world, r in rows.items():
            low, high = r["success_ci95"]
            print(f"{world:6s} {100 * r['success_rate']:7.1f}% {100 * low:6.1f}-{100 * high:5.1f}% "
                  f"{r['mean_max_coverage']:13.3f}")  # fmt: skip
        if out:
            (out / "side_by_side.json").write_text(json.dumps(rows, indent=1))
        print(json.dumps(rows))
        return 0
    summary = evaluate(dataclasses.replace(cfg, world=args.world_model or ""))
    summary.pop("config")
    print(json.dumps(summary, indent=1))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from hiwm.tasks import task_names

    p = sub.add_parser("eval", help="evaluate a policy in its task's world (lockstep, parallel workers)")
    p.add_argument(
        "--policy", "--checkpoint", required=True, help="checkpoint folder, or module:Class of an outside policy"
    )
    p.add_argument("--task", choices=task_names(), help="the task's env (default: the checkpoint's training task)")
    p.add_argument("--policy-args", default="", help="JSON keyword arguments for module:Class")
    p.add_argument("--episodes", type=int, default=None, help="number of episodes (the first N seeds)")
    p.add_argument("--seeds", default="0:", help="A:B (range; keep disjoint from training seeds) or a,b,c")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=None, help="episode limit (default: the task's)")
    p.add_argument("--videos", type=int, default=4, help="episodes tiled into episodes.mp4")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    p.add_argument(
        "--world-model", help="evaluate inside this world-model checkpoint (same initial states, probe success)"
    )
    p.add_argument("--both", action="store_true", help="with --world-model: the real env too, side by side")
    p.add_argument("--out", default=None, help="folder for episodes.csv/json, summary.json, video and plot")
    p.set_defaults(func=cmd_eval)
