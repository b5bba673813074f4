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

from hiwm.world_model import detector as det


def pusht_episodes(n: int, levels: list[float], image_size: int, first_seed: int) -> list[det.Outcome]:
    from hiwm.tasks.pusht.env import PushTEnv
    from hiwm.tasks.pusht.expert import ExpertConfig, ScriptedExpert

    env, out = PushTEnv(image_size=image_size), []
    for i in range(n):
        expert = ScriptedExpert(ExpertConfig.noisy(levels[i % len(levels)]), seed=first_seed + i)
        obs = env.reset(seed=first_seed + i)
        frames, proprio = [obs.image], [obs.agent_pos]
        while not obs.done:
            obs = env.step(expert.act(obs.state))
            frames.append(obs.image)
            proprio.append(obs.agent_pos)
        labels = np.zeros(len(frames), dtype=bool)
        labels[-1] = obs.success
        out.append(
            det.Outcome(np.stack(frames), labels, np.asarray(proprio, dtype=np.float32), f"seed {first_seed + i}")
        )
    env.close()
    return out


def arm_episodes(n: int, levels: list[float], image_size: int, first_seed: int) -> list[det.Outcome]:
    from hiwm.tasks.so101.env import CAMERA, So101PickEnv
    from hiwm.tasks.so101.expert import ArmExpert, ArmExpertConfig

    env, out = So101PickEnv(image_size=image_size), []
    for i in range(n):
        seed = first_seed + i
        expert = ArmExpert(ArmExpertConfig.noisy(levels[i % len(levels)]), seed=seed)
        obs = env.reset(seed=seed)
        frames, proprio, labels = [obs.images[CAMERA]], [obs.joints], [obs.success]
        while not obs.done:
            obs = env.step(expert.act(obs.state))
            frames.append(obs.images[CAMERA])
            proprio.append(obs.joints)
            labels.append(obs.success)
        out.append(
            det.Outcome(
                np.stack(frames),
                det.frame_labels(np.array(labels)),
                np.asarray(proprio, dtype=np.float32),
                f"seed {seed}",
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["pusht", "so101_pick"], default="so101_pick")
    parser.add_argument("--episodes", type=int, default=120)
    parser.add_argument("--levels", type=float, nargs="+", default=[0.0, 1.0, 2.0])
    parser.add_argument("--image-size", type=int, default=0, help="env camera size (default: the task's 96 / 64)")
    parser.add_argument("--detector-size", type=int, default=48, help="the detector's input size")
    parser.add_argument("--proprio", action="store_true", help="the detector reads proprio too")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--margin", type=int, default=3, help="frames before a success left out of training")
    parser.add_argument("--first-seed", type=int, default=600_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.monotonic()
    make = pusht_episodes if args.task == "pusht" else arm_episodes
    size = args.image_size or (96 if args.task == "pusht" else 64)
    episodes = make(args.episodes, args.levels, size, args.first_seed)
    if not args.proprio:
        episodes = [det.Outcome(e.frames, e.labels, None, e.source) for e in episodes]
    collect_s = time.monotonic() - t0
    cfg = det.DetectorTrainConfig(
        steps=args.steps, batch=32, margin=args.margin, calibration_fraction=0.25, test_fraction=0.35
    )
    t0 = time.monotonic()
    _, metrics = det.train(episodes, det.DetectorConfig(image_size=args.detector_size), cfg)
    out = {"task": args.task, "levels": args.levels, "proprio": args.proprio, "episodes": len(episodes),
           "real_successes": sum(e.success for e in episodes), "collect_s": round(collect_s, 1),
           "train_and_calibrate_s": round(time.monotonic() - t0, 1), **metrics}  # fmt: skip
    print(json.dumps(out))


if __name__ == "__main__":
    main()
