"""Scripted-expert benchmark: success rate over seeds on real gym-pusht physics.

Prints one JSON object. Target (issue 3): >= 90 % success (coverage > 0.95 within 300
steps) over 100 seeds with the default, noise-free expert.

    python bench/expert.py [--seeds 100] [--first-seed 0] [--noise 0.0]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from tqdm import tqdm

from hiwm.tasks.pusht.env import PushTEnv
from hiwm.tasks.pusht.expert import ExpertConfig, ScriptedExpert


def run_episode(env: PushTEnv, seed: int, config: ExpertConfig) -> dict:
    obs = env.reset(seed=seed)
    expert = ScriptedExpert(config, seed=seed)
    while not obs.done:
        obs = env.step(expert.act(obs.state))
    return {"seed": seed, "success": obs.success, "max_coverage": obs.max_coverage, "steps": obs.step}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=0.0, help="ExpertConfig.noisy(level); 0 = clean expert")
    parser.add_argument("--failures", action="store_true", help="list the failed seeds")
    args = parser.parse_args()
    config = ExpertConfig.noisy(args.noise)
    env = PushTEnv(render=False)
    start = time.perf_counter()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    results = [run_episode(env, s, config) for s in tqdm(seeds, desc="episodes", unit="ep")]
    wall = time.perf_counter() - start
    out = {
        "episodes": len(results),
        "noise_level": args.noise,
        "success_rate": float(np.mean([r["success"] for r in results])),
        "mean_max_coverage": float(np.mean([r["max_coverage"] for r in results])),
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
