"""Scripted-expert benchmark: a task's expert over seeds in its own physics.

Prints one JSON object. Targets: >= 90 % success over 100 seeds with the noise-free expert, on every
task (Push-T: coverage > 0.95 within 300 steps; so101_pick: the cube 5 cm up between the jaws).

    python bench/expert.py [--task pusht] [--seeds 100] [--first-seed 0] [--noise 0.0] [--failures]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from tqdm import tqdm

from hiwm.tasks import DEFAULT_TASK, get_task, task_names
from hiwm.tasks.world import TaskWorld, load_world


def run_episode(world: TaskWorld, env: object, seed: int, noise: float) -> dict:
    obs = env.reset(seed=seed)
    expert = world.make_expert(noise, seed=seed)
    expert.reset()
    best = world.metric(obs)
    while not obs.done:
        obs = env.step(expert.act(world.state(obs)))
        best = max(best, world.metric(obs))
    return {"seed": seed, "success": bool(obs.success), "max_metric": best, "steps": int(obs.step)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default=DEFAULT_TASK, choices=task_names())
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=0.0, help="the expert's noise level; 0 = clean expert")
    parser.add_argument("--failures", action="store_true", help="list the failed seeds")
    args = parser.parse_args()
    task = get_task(args.task)
    world = load_world(task)
    env = world.make_env()
    start = time.perf_counter()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    results = [run_episode(world, env, s, args.noise) for s in tqdm(seeds, desc="episodes", unit="ep")]
    wall = time.perf_counter() - start
    out = {
        "task": task.name,
        "episodes": len(results),
        "noise_level": args.noise,
        "success_rate": float(np.mean([r["success"] for r in results])),
        f"mean_max_{task.success.metric}": float(np.mean([r["max_metric"] for r in results])),
        "mean_steps": float(np.mean([r["steps"] for r in results])),
        "mean_steps_successful": float(np.mean([r["steps"] for r in results if r["success"]] or [np.nan])),
        "wall_s": round(wall, 2),
        "ms_per_step": round(1e3 * wall / max(1, sum(r["steps"] for r in results)), 3),
    }
    if args.failures:
        out["failed_seeds"] = [r["seed"] for r in results if not r["success"]]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
