"""``hiwm eval``: a policy's real success in its task's world, or several policies' paired on the same
seeds (``--compare``); the work is in :mod:`hiwm.policy.evaluate` and :mod:`hiwm.policy.compare`."""

from __future__ import annotations

import argparse
import json


def shipped_defaults(args: argparse.Namespace) -> tuple[str, str]:
    """The policy and world model asked for, with the task's shipped ones where none is named
    (``--world-model`` without a value: the shipped world model)."""
    from hiwm.paths import shipped_model
    from hiwm.tasks import DEFAULT_TASK

    task = args.task or DEFAULT_TASK

    def resolve(given: str, kind: str) -> str:
        if given != SHIPPED:
            return given
        path = shipped_model(task, kind)
        if path is None:
            what = kind.replace("_", " ")
            raise SystemExit(f"hiwm eval: error: hiwm ships no {what} for task {task!r}; name a checkpoint")
        return str(path)

    return resolve(args.policy, "act"), resolve(args.world_model or "", "world_model")


SHIPPED = "shipped"  # the task's model under models/ (hiwm.paths.shipped_model)


def cmd_eval(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from hiwm.policy.evaluate import EvalConfig, evaluate

    args.policy, args.world_model = shipped_defaults(args)
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
    if args.compare:  # several policies on the same seeds, paired differences against the first
        from hiwm.policy.compare import COMPARE_EPISODES, compare, format_table

        if args.both and not args.world_model:
            raise SystemExit("hiwm eval: error: --both needs --world-model")
        if args.episodes is None and args.seeds.strip().endswith(":"):  # an open range: enough seeds to tell
            cfg = dataclasses.replace(cfg, episodes=COMPARE_EPISODES)
        worlds = {"real": ""} if not args.world_model else {"model": args.world_model}
        if args.world_model and args.both:
            worlds = {"real": "", "model": args.world_model}
        result = compare(cfg, [args.policy, *args.compare], worlds)
        print(format_table(result))
        print(json.dumps({"seeds": len(result["seeds"]), "paired": result["paired"]}))
        return 0
    if args.world_model and args.both:  # the same seeds in both worlds, side by side
        out = Path(args.out) if args.out else None
        summaries = {}
        for world, ckpt in (("real", ""), ("model", args.world_model)):
            run = dataclasses.replace(cfg, world=ckpt, out=str(out / world) if out else None)
            summaries[world] = evaluate(run)
        from hiwm.tasks import get_task

        metric = f"mean_max_{get_task(cfg.task).success.metric}"
        rows = {w: {k: s[k] for k in ("episodes", "success_rate", "success_ci95", metric)}
                for w, s in summaries.items()}  # fmt: skip
        print(f"{'world':6s} {'success':>8s} {'95 % CI':>14s} {metric.removeprefix('mean_'):>13s}")
        for world, r in rows.items():
            low, high = r["success_ci95"]
            print(f"{world:6s} {100 * r['success_rate']:7.1f}% {100 * low:6.1f}-{100 * high:5.1f}% "
                  f"{r[metric]:13.3f}")  # fmt: skip
        if out:
            (out / "side_by_side.json").write_text(json.dumps(rows, indent=1))
        print(json.dumps(rows))
        return 0
    summary = evaluate(dataclasses.replace(cfg, world=args.world_model or ""))
    summary.pop("config")
    summary.pop("per_seed")  # in summary.json with --out; the printed summary stays short
    print(json.dumps(summary, indent=1))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from hiwm.tasks import task_names

    p = sub.add_parser("eval", help="evaluate a policy in its task's world (lockstep, parallel workers)")
    p.add_argument(
        "--policy",
        "--checkpoint",
        default=SHIPPED,
        help="checkpoint folder, or module:Class of an outside policy (default: the ACT hiwm ships for the task)",
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
        "--world-model",
        nargs="?",
        const=SHIPPED,
        help="evaluate inside this world-model checkpoint (same initial states, its success verdict); "
        "without a value, the one hiwm ships for the task",
    )
    p.add_argument("--both", action="store_true", help="with --world-model: the real env too, side by side")
    p.add_argument("--compare", nargs="+", metavar="POLICY",
                   help="also evaluate these on the same seeds (200 unless --episodes or A:B says): success "
                        "differences against --policy, paired bootstrap 95 %% CI and McNemar's test")  # fmt: skip
    p.add_argument("--out", default=None, help="folder for episodes.csv/json, summary.json, video and plot")
    p.set_defaults(func=cmd_eval)
