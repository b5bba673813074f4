"""``hiwm train policy|world-model|detector``: thin dispatchers; the work is in each model's package."""

from __future__ import annotations

import argparse
import dataclasses
import json


def cmd_policy(args: argparse.Namespace) -> int:
    from hiwm.policy.train import PolicyTrainConfig, train

    cfg = PolicyTrainConfig(
        backbone=args.backbone,
        task=args.task,
        data=args.data,
        out=args.out,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        val_fraction=args.val_fraction,
        val_every=args.val_every,
        intervention_weight=args.intervention_weight,
        max_episodes=args.max_episodes,
        max_minutes=args.max_minutes,
        seed=args.seed,
        threads=args.threads,
        device=args.device,
        model=json.loads(args.model) if args.model else {},
        resume=not args.no_resume,
        init=args.init or "",
    )
    print(train(cfg).out)
    return 0


def cmd_world_model(args: argparse.Namespace) -> int:
    from hiwm.world_model.train import run

    return run(args)


def cmd_detector(args: argparse.Namespace) -> int:
    from hiwm.tasks import get_task
    from hiwm.world_model.detector import DetectorTrainConfig, for_task, metric_target, run

    cfg = DetectorTrainConfig(
        steps=args.steps,
        batch=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        threads=args.threads,
        calibration_fraction=args.calibration_fraction,
        test_fraction=args.test_fraction,
    )
    # the task's detector (its loop options) unless the options say otherwise
    task = get_task(args.task)
    recipe, _ = for_task(task)
    proprio = task.loop.detector_proprio if args.proprio is None else args.proprio
    weight = recipe.metric_weight if args.metric_weight is None else args.metric_weight
    fields = {"frames": recipe.frames, "proprio_layers": recipe.proprio_layers, "score": recipe.score}
    if not weight > 0:
        fields["score"] = "success"
    fields.update(json.loads(args.model))
    metric, scale = metric_target(task) if weight > 0 else ("", 1.0)
    metrics = run(args.data, args.out, args.camera, proprio, args.image_size, cfg, metric, weight, scale, fields)
    print(json.dumps(metrics))
    return 0


def world_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``hiwm train world-model`` options: every WorldModelTrainConfig field, plus model sizes as JSON."""
    parser.add_argument("--data", nargs="+", required=True, help="LeRobot dataset directories")
    parser.add_argument("--out", required=True, help="checkpoint directory (created)")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    from hiwm.world_model.config import PRESETS, WorldModelTrainConfig  # torch-free: `hiwm --help` stays fast

    parser.add_argument("--preset", default="small", choices=sorted(PRESETS), help="model size (see --model)")
    parser.add_argument(
        "--model",
        default="{}",
        help="model fields over the preset and the task's interface as JSON: sizes, or interface fields, e.g. "
        '\'{"action_conditioning": "mlp", "cameras": [["front", 128, 128]]}\'',
    )
    from hiwm.tasks import DEFAULT_TASK, task_names

    parser.add_argument(
        "--task",
        choices=task_names(),
        help=f"the task the model is a world of: its interface (default {DEFAULT_TASK}; "
        "with --probe-only or --resume, the checkpoint's)",
    )
    parser.add_argument("--no-probe", action="store_true", help="skip training the state probe")
    parser.add_argument("--probe-only", action="store_true", help="(re)train only the probe of the checkpoint in --out")

    for f in dataclasses.fields(WorldModelTrainConfig):
        default = getattr(WorldModelTrainConfig(), f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, tuple):
            parser.add_argument(flag, type=int, nargs="+", default=list(default))
        else:
            parser.add_argument(flag, type=type(default), default=default)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train models")
    group = parser.add_subparsers(dest="train_command", required=True, metavar="WHAT")
    p = group.add_parser("policy", help="train a Diffusion Policy or ACT policy on LeRobot datasets")
    from hiwm.tasks import DEFAULT_TASK, task_names

    p.add_argument("--backbone", choices=["diffusion", "act"], default="diffusion")
    p.add_argument("--task", choices=task_names(), default=DEFAULT_TASK, help="the task (its policy options)")
    p.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="DATASET[:RATIO]",
        help="dataset folders, each optionally with a mixing ratio (base:0.7 corrections:0.3)",
    )
    p.add_argument("--out", required=True, help="checkpoint folder (resumed when it holds a training state)")
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--val-fraction", type=float, default=0.1, help="episodes held out for validation loss")
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument("--intervention-weight", type=float, default=1.0, help="loss weight of human-corrected frames")
    p.add_argument("--max-episodes", type=int, default=None, help="use the first N episodes of each dataset")
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop (and save) after this wall time")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--model", default="", help="JSON backbone config overrides, e.g. '{\"inference_steps\": 10}'")
    p.add_argument("--no-resume", action="store_true", help="start over even if --out holds a training state")
    p.add_argument("--init", help="post-train: start from this checkpoint (weights and normalisation)")
    p.set_defaults(func=cmd_policy)

    wm = group.add_parser("world-model", help="the action-conditioned world model and its state probe")
    world_model_arguments(wm)
    wm.set_defaults(func=cmd_world_model)

    d = group.add_parser("detector", help="a task's success detector from real episodes' next.success, calibrated")
    d.add_argument("--data", nargs="+", required=True, help="LeRobot datasets with next.success")
    d.add_argument("--out", required=True, help="detector folder (created)")
    d.add_argument("--camera", default="", help="camera to read (default: the first observation.images.*)")
    d.add_argument(
        "--proprio",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="read observation.state beside the frames (default: as the task's loop options say)",
    )
    d.add_argument("--image-size", type=int, default=64, help="frames are resized to this square")
    d.add_argument(
        "--task",
        choices=task_names(),
        default=DEFAULT_TASK,
        help="whose detector (hiwm tasks --json: loop) and success metric; the options below override it",
    )
    d.add_argument(
        "--metric-weight",
        type=float,
        default=None,
        help="> 0: also regress the task's success metric on every frame (default: the task's)",
    )
    d.add_argument(
        "--model",
        default="{}",
        help='DetectorConfig fields as JSON, e.g. \'{"frames": false, "proprio_layers": 2, "score": "metric"}\'',
    )
    d.add_argument("--steps", type=int, default=600)
    d.add_argument("--batch-size", type=int, default=64)
    d.add_argument("--lr", type=float, default=2e-3)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    d.add_argument("--calibration-fraction", type=float, default=0.2, help="held-out episodes to calibrate on")
    d.add_argument("--test-fraction", type=float, default=0.2, help="held-out episodes the figures come from")
    d.set_defaults(func=cmd_detector)
