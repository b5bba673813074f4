"""SO-101 pick-cube benchmark: scripted-expert success, rendering and physics speed, on a CPU.

Prints one JSON object. Targets: >= 90 % expert success over 100 seeds; >= 30 rendered frames/s at
128x128 in the process (MuJoCo on Mesa's llvmpipe through EGL, or OSMesa with MUJOCO_GL=osmesa).

    python bench/arm.py [--seeds 100] [--first-seed 0] [--noise 0.0] [--render-s 5] [--failures]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from tqdm import tqdm

from hiwm.tasks.so101.env import So101PickEnv
from hiwm.tasks.so101.expert import ArmExpert, ArmExpertConfig


def run_episode(env: So101PickEnv, expert: ArmExpert, seed: int) -> dict:
    obs = env.reset(seed=seed)
    expert.reset()
    while not obs.done:
        obs = env.step(expert.act(obs.state))
    return {"seed": seed, "success": obs.success, "steps": obs.step, "lift": obs.lift}


def render_rate(size: int, seconds: float) -> dict:
    """Frames/s of the camera alone, and control steps/s with and without images, along expert episodes."""
    env = So101PickEnv(image_size=size, render=False)
    expert = ArmExpert()
    poses = []  # states along two episodes: the arm in the poses a policy sees
    for seed in (0, 1):
        obs = env.reset(seed=seed)
        expert.reset()
        while not obs.done:
            obs = env.step(expert.act(obs.state))
            poses.append(env.get_state())
    env.render()  # the first frame builds the GL context: not part of the rate
    frames, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.set_state(poses[frames % len(poses)])
        env.render()
        frames += 1
    fps = frames / (time.perf_counter() - start)
    shape = next(iter(env.render().values())).shape
    env.close()
    return {"render_fps": round(fps, 1), "frame_shape": list(shape)}


def step_rate(render: bool, seconds: float) -> float:
    """Control steps/s of the env (0.1 s of physics each) under the expert, with or without the camera."""
    env = So101PickEnv(render=render)
    expert = ArmExpert()
    steps, seed, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        obs = env.reset(seed=seed)
        expert.reset()
        while not obs.done:
            obs = env.step(expert.act(obs.state))
            steps += 1
        seed += 1
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def physics_rate(seconds: float) -> float:
    """Bare MuJoCo steps/s (2 ms each) of the scene with the arm holding a pose and the cube resting."""
    env = So101PickEnv(render=False)
    env.reset(seed=0)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step(env.last.joints)
        n += env.substeps
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=0.0, help="ArmExpertConfig.noisy(level); 0 = clean expert")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--render-s", type=float, default=5.0, help="seconds per speed measurement")
    parser.add_argument("--failures", action="store_true", help="list the failed seeds")
    args = parser.parse_args()

    env = So101PickEnv(render=False)
    expert = ArmExpert(ArmExpertConfig.noisy(args.noise), seed=args.first_seed)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    start = time.perf_counter()
    results = [run_episode(env, expert, s) for s in tqdm(seeds, desc="episodes", unit="ep")]
    wall = time.perf_counter() - start
    steps = sum(r["steps"] for r in results)
    out = {
        "task": "so101_pick",
        "episodes": len(results),
        "noise_level": args.noise,
        "success_rate": float(np.mean([r["success"] for r in results])),
        "mean_steps": float(np.mean([r["steps"] for r in results])),
        "expert_ms_per_step": round(1e3 * wall / max(1, steps), 3),
        **render_rate(args.image_size, args.render_s),
        "env_steps_per_s_with_images": round(step_rate(True, args.render_s), 1),
        "env_steps_per_s_no_images": round(step_rate(False, args.render_s), 1),
        "physics_steps_per_s": round(physics_rate(args.render_s)),
        "mujoco_gl": os.environ.get("MUJOCO_GL", ""),
        "targets": {"success_rate": 0.9, "render_fps": 30},
    }
    if args.failures:
        out["failed_seeds"] = [r["seed"] for r in results if not r["success"]]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
