"""``hiwm collect``, ``hiwm dataset info|verify`` and ``hiwm bag info|convert``: datasets and bags."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

if TYPE_CHECKING:
    from hiwm.policy.dagger import DaggerConfig


def default_dataset(task: str) -> str:
    """Where ``hiwm collect`` writes a task's expert data unless told."""
    return f"data/{task}_expert"


def dagger_config(args: argparse.Namespace) -> DaggerConfig:
    """``hiwm collect --policy``'s DAgger collection: the same seeds, steps and workers."""
    from hiwm.policy.dagger import DaggerConfig

    seeds = f"{args.seed}:{args.seed + args.episodes}"
    return DaggerConfig(args.policy, seeds, workers=args.workers, max_steps=args.max_steps, task=args.task or "")


def cmd_collect(args: argparse.Namespace) -> int:
    from hiwm.data.collect import CollectConfig, collect
    from hiwm.policy.dagger import collect_relabelled
    from hiwm.tasks import DEFAULT_TASK

    dagger = dagger_config(args) if args.policy else None
    # the task: the one named, else the driving checkpoint's, else the default
    args.task = dagger.task if dagger else args.task or DEFAULT_TASK
    cfg = CollectConfig(
        episodes=args.episodes,
        seed=args.seed,
        noise=args.noise,
        labels=args.labels,
        image_size=args.image_size,
        max_steps=args.max_steps,
        workers=args.workers,
        flush_every=args.flush_every,
        task=args.task,
    )
    args.out = args.out or default_dataset(args.task)
    if args.policy and (args.bag or args.noise or args.labels != "executed" or args.image_size):
        print(
            "error: --policy collects the states the policy visits, each labelled by the noise-free expert: "
            "it takes no --bag, --noise, --labels or --image-size",
            file=sys.stderr,
        )
        return 2
    if args.bag and Path(args.bag).exists():
        print(f"error: {args.bag} already exists (bags are written once)", file=sys.stderr)
        return 2
    bar = tqdm(total=cfg.episodes, unit="ep", desc="collect", disable=args.quiet)
    successes = [0]

    def on_episode(result: object) -> None:
        successes[0] += result.success
        bar.update(1)
        bar.set_postfix(success=f"{successes[0]}/{bar.n}")

    try:
        if args.policy:
            summary = collect_relabelled(dagger, args.out, on_episode=on_episode)
        else:
            summary = collect(cfg, args.out, bag_path=args.bag, on_episode=on_episode)
    finally:
        bar.close()
    out = {
        "dataset": summary.dataset,
        "bag": summary.bag,
        "episodes": summary.episodes,
        "frames": summary.frames,
        "success_rate": round(summary.success_rate, 4),
        "seconds": round(summary.seconds, 2),
        "frames_per_s": round(summary.frames / max(summary.seconds, 1e-9), 1),
    }
    print(json.dumps(out))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from hiwm.data import LeRobotDataset

    ds = LeRobotDataset(args.root)
    info = ds.info
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{args.root}: LeRobot {info['codebase_version']}, robot {info.get('robot_type')}, {info['fps']} fps")
    print(f"  episodes {info['total_episodes']}, frames {info['total_frames']}, tasks {info.get('total_tasks')}")
    for key, feature in info["features"].items():
        print(f"  {key:32s} {feature['dtype']:8s} {feature['shape']}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from hiwm.data import verify

    bar = tqdm(unit="step", desc="verify", disable=args.quiet, leave=False)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        report = verify(args.root, decode_video=not args.fast, progress=progress)
    finally:
        bar.close()
    print(report.text())
    return 0 if report.ok else 1


def cmd_bag_info(args: argparse.Namespace) -> int:
    from hiwm.data.bag import bag_topics

    meta = bag_topics(args.bag)
    print(json.dumps(meta, indent=2))
    return 0


def cmd_bag_convert(args: argparse.Namespace) -> int:
    from hiwm.data.bag import bag_topics
    from hiwm.data.convert import RobotTopics, bag_to_dataset
    from hiwm.tasks import get_task

    topics = RobotTopics.for_task(get_task(args.task), args.namespace) if args.namespace else RobotTopics()
    for spec in args.camera or []:
        name, _, topic = spec.partition("=")
        if not name or not topic:
            print(f"error: --camera takes CAMERA=TOPIC, got {spec!r}", file=sys.stderr)
            return 2
        topics.cameras[name] = topic
    for key in ("state", "status", "command"):
        if getattr(args, key):
            setattr(topics, key, getattr(args, key))
    total = bag_topics(args.bag)["messages"]
    with tqdm(total=total, unit="msg", desc="convert", disable=args.quiet) as bar:

        def progress(n: int) -> None:
            bar.update(n - bar.n)

        summary = bag_to_dataset(
            args.bag, args.out, topics, task=args.task, instruction=args.instruction, fps=args.fps, progress=progress
        )
    print(json.dumps(summary.__dict__))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from hiwm.tasks import DEFAULT_TASK, task_names

    p = sub.add_parser("collect", help="scripted-expert episodes of a task into a LeRobot v3 dataset (and a bag)")
    p.add_argument(
        "--task", choices=task_names(), help=f"the task whose expert runs (default {DEFAULT_TASK}; --policy: its task)"
    )
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--out", help="dataset folder, created or appended to (default data/<task>_expert)")
    p.add_argument("--bag", help="also record the robot traffic into this new rosbag2 MCAP folder")
    p.add_argument("--seed", type=int, default=0, help="first seed; episode i uses seed + i")
    p.add_argument("--noise", type=float, default=0.0, help="expert sloppiness: 0 clean, 1 sloppy, 2+ mostly failing")
    p.add_argument(
        "--labels",
        choices=("executed", "clean"),
        default="executed",
        help="record the action taken, or the clean expert's action at each visited state (DART: policy data only)",
    )
    p.add_argument(
        "--policy",
        metavar="CHECKPOINT",
        help="a policy drives and the noise-free expert labels every state it visits (DAgger: policy data only)",
    )
    p.add_argument("--image-size", type=int, default=None, help="square frames (default: each camera's size)")
    p.add_argument("--max-steps", type=int, default=None, help="episode limit (default: the task's)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--flush-every", type=int, default=10, help="episodes per committed file")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_collect)

    ds = sub.add_parser("dataset", help="inspect and check LeRobot v3 datasets")
    dsub = ds.add_subparsers(dest="dataset_command", required=True, metavar="SUBCOMMAND")
    p = dsub.add_parser("info", help="size, features and counts")
    p.add_argument("root")
    p.add_argument("--json", action="store_true", help="print meta/info.json")
    p.set_defaults(func=cmd_info)
    p = dsub.add_parser("verify", help="check schema, counts, indices and video decodability (exit 1 if invalid)")
    p.add_argument("root")
    p.add_argument("--fast", action="store_true", help="open videos without decoding every frame")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_verify)

    bag = sub.add_parser("bag", help="rosbag2 (MCAP) recordings")
    bsub = bag.add_subparsers(dest="bag_command", required=True, metavar="SUBCOMMAND")
    p = bsub.add_parser("info", help="topics, types, counts and duration")
    p.add_argument("bag")
    p.set_defaults(func=cmd_bag_info)
    p = bsub.add_parser("convert", help="assemble the recorded robot episodes into a LeRobot v3 dataset")
    p.add_argument("bag")
    p.add_argument("out", help="dataset folder, created or appended to")
    p.add_argument("--task", choices=task_names(), default=DEFAULT_TASK, help="the task recorded (its topics, layout)")
    p.add_argument("--namespace", default="", help="the recorded robot's namespace (default: the root)")
    p.add_argument("--camera", action="append", metavar="CAMERA=TOPIC",
                   help="a camera's image topic (default: the task's contract topic); repeat per camera")  # fmt: skip
    p.add_argument("--state", help="task/state topic (default: the contract's)")
    p.add_argument("--status", help="task/status topic")
    p.add_argument("--command", help="robot/command topic")
    p.add_argument("--instruction", default="", help="the episodes' language task (default: the task world's)")
    p.add_argument("--fps", type=int, default=0, help="dataset frame rate (default: the task's control rate)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_bag_convert)
