"""Success-detector benchmark: a learned detector trained on fresh real episodes of a task's scripted
expert (clean to mostly failing), calibrated and tested on held-out ones. Prints one JSON object.

Target: agreement with the real outcome >= 90 % on the held-out test episodes.

    python bench/detector.py --task so101_pick [--episodes 120] [--levels 0 2 4] [--proprio]
    python bench/detector.py --task pusht [--episodes 90]

Episodes cycle through the expert noise ``--levels``; each keeps every frame up to and including
the first successful one (the env ends the episode there), labelled success from it on. The split
(train / calibration / test) is by whole episodes, stratified by outcome.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from hiwm.tasks import get_task, task_names
from hiwm.world_model import detector as det

SIZES = {"so101_pick": 64}  # frames the env renders unless --image-size says: the arm's at half its camera's


def task_episodes(
    task: str, n: int, levels: list[float], image_size: int, first_seed: int, after_success: int = 0
) -> list[det.Outcome]:
    """Fresh episodes of the task's real env and scripted expert, the first camera's frames, and
    ``after_success`` frames more of the expert acting past a success (training frames only)."""
    from hiwm.tasks import get_task
    from hiwm.tasks.world import load_world

    world = load_world(get_task(task))
    camera = world.task.cameras[0].name
    env, out = world.make_env(image_size), []
    for i in range(n):
        seed = first_seed + i
        expert = world.make_expert(levels[i % len(levels)], seed=seed)
        obs = env.reset(seed=seed)
        frames, proprio, labels = [world.images(obs)[camera]], [world.proprio(obs)], [obs.success]
        metric = [world.metric(obs)]
        extra = after_success
        while not obs.done or (obs.success and extra > 0):
            extra -= obs.done
            obs = env.step(expert.act(world.state(obs)))
            frames.append(world.images(obs)[camera])
            proprio.append(world.proprio(obs))
            labels.append(obs.success)
            metric.append(world.metric(obs))
        out.append(
            det.Outcome(
                np.stack(frames),
                det.frame_labels(np.array(labels)),
                np.asarray(proprio, dtype=np.float32),
                f"seed {seed}",
                np.asarray(metric, dtype=np.float32),
            )
        )
    close = getattr(env, "close", None)
    if close is not None:
        close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=task_names(), default="so101_pick")
    parser.add_argument("--episodes", type=int, default=120)
    parser.add_argument("--levels", type=float, nargs="+", default=[0.0, 1.0, 2.0])
    parser.add_argument(
        "--image-size", type=int, default=0, help="env camera size (default: the task's, 64 for the arm)"
    )
    parser.add_argument("--detector-size", type=int, default=48, help="the detector's input size")
    parser.add_argument("--proprio", action="store_true", help="the detector reads proprio too")
    parser.add_argument("--proprio-only", action="store_true", help="the detector reads proprio, not frames")
    parser.add_argument("--proprio-layers", type=int, default=1, help="hidden layers of the proprio MLP")
    parser.add_argument("--hidden", type=int, default=64, help="width of the detector's MLPs")
    parser.add_argument("--seed", type=int, default=0, help="the split's and the net's seed")
    parser.add_argument("--score", choices=det.SCORES, default="success", help="the output the verdict calibrates")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument(
        "--metric-weight", type=float, default=0.0, help="> 0: regress the task's success metric on every frame too"
    )
    parser.add_argument("--margin", type=int, default=3, help="frames before a success left out of training")
    parser.add_argument("--first-seed", type=int, default=600_000)
    parser.add_argument("--after-success", type=int, default=0, help="frames recorded past a success (training)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.monotonic()
    size = args.image_size or SIZES.get(args.task) or get_task(args.task).cameras[0].height
    episodes = task_episodes(args.task, args.episodes, args.levels, size, args.first_seed, args.after_success)
    if not (args.proprio or args.proprio_only):
        episodes = [det.Outcome(e.frames, e.labels, None, e.source, e.metric) for e in episodes]
    collect_s = time.monotonic() - t0
    cfg = det.DetectorTrainConfig(
        steps=args.steps,
        batch=args.batch,
        margin=args.margin,
        calibration_fraction=0.25,
        test_fraction=0.35,
        seed=args.seed,
    )
    t0 = time.monotonic()
    success = get_task(args.task).success  # the metric head's target: the metric with its threshold at 1
    model_cfg = det.DetectorConfig(
        image_size=args.detector_size,
        metric_weight=args.metric_weight,
        metric_scale=abs(success.threshold) or 1.0,
        score=args.score,
        proprio_layers=args.proprio_layers,
        frames=not args.proprio_only,
        hidden=args.hidden,
    )
    _, metrics = det.train(episodes, model_cfg, cfg)
    out = {"task": args.task, "levels": args.levels, "proprio": args.proprio, "after_success": args.after_success,
           "image_size": size, "detector_size": args.detector_size, "steps": args.steps, "batch": args.batch,
           "metric_weight": args.metric_weight, "score": args.score, "proprio_layers": args.proprio_layers,
           "frames": not args.proprio_only, "hidden": args.hidden, "seed": args.seed, "episodes": len(episodes),
           "real_successes": sum(e.success for e in episodes), "collect_s": round(collect_s, 1),
           "train_and_calibrate_s": round(time.monotonic() - t0, 1), **metrics}  # fmt: skip
    print(json.dumps(out))


if __name__ == "__main__":
    main()
