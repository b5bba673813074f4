"""Push-T benchmark: what the graph costs, and how fast episodes are written.

Prints one JSON object:
- ``bare_env``: steps/s of gym-pusht in-process (96x96 rendering), the same actions;
- ``lockstep_dds``: steps/s of the simulated robot node (sim_robot, task pusht) in lockstep, driven over DDS from this
  process (one action out, the step's image, states and status back, then the next);
- ``ratio``: lockstep_dds / bare_env (target >= 0.5);
- ``dataset_write``: frames/s of :class:`LeRobotDatasetWriter` (parquet + h264 video).

    python bench/pusht.py [--steps 600] [--frames 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ.setdefault("HIWM_BACKEND", "dds")

from hiwm.comm import create_node, new_message
from hiwm.comm.qos import KEEP_ALL
from hiwm.data.lerobot import LeRobotDatasetWriter
from hiwm.tasks import get_task
from hiwm.tasks.pusht import pusht_features
from hiwm.tasks.pusht.env import PushTEnv

CAMERA = get_task("pusht").cameras[0].topic


def actions(n: int, seed: int = 0) -> np.ndarray:
    """A smooth random walk of targets inside the workspace."""
    rng = np.random.default_rng(seed)
    return np.clip(256 + np.cumsum(rng.normal(0, 8, (n, 2)), axis=0), 20, 490)


def bench_bare(steps: int) -> float:
    env = PushTEnv(image_size=96)
    env.reset(seed=0)
    acts = actions(steps)
    start = time.perf_counter()
    for k in range(steps):
        if env.last.done:
            env.reset(seed=k)
        env.step(acts[k])
    return steps / (time.perf_counter() - start)


def bench_lockstep(steps: int) -> float:
    ros = ["--ros-args", "-r", "__ns:=/bench", "-p", "task:=pusht", "-p", "clock:=lockstep"]
    robot = subprocess.Popen(
        [sys.executable, "-m", "hiwm.nodes.sim_robot", *ros],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    node = create_node("pusht_bench")
    images: list = []
    statuses: list = []
    try:
        node.create_subscription("sensor_msgs/msg/Image", f"/bench/{CAMERA}", images.append, KEEP_ALL)
        node.create_subscription("hiwm_msgs/msg/TaskStatus", "/bench/task/status", statuses.append, KEEP_ALL)
        cmd = node.create_publisher("hiwm_msgs/msg/ActionChunk", "/bench/robot/command", KEEP_ALL)
        reset = node.create_client("hiwm_msgs/srv/Reset", "/bench/robot/reset")
        if not reset.wait_for_service(30.0):
            raise RuntimeError("the robot node did not come up")
        node.spin_until(lambda: cmd.matched_count() > 0, 10.0)
        reset.call(new_message("hiwm_msgs/srv/Reset_Request", seed=0), timeout=10.0)
        node.spin_until(lambda: len(images) >= 1, 10.0)
        acts = actions(steps)
        start = time.perf_counter()
        for k in tqdm(range(steps), desc="lockstep over DDS", unit="step", leave=False):
            if statuses and statuses[-1].done:
                n = len(images)
                reset.call(new_message("hiwm_msgs/srv/Reset_Request", seed=k), timeout=10.0)
                node.spin_until(lambda n=n: len(images) > n, 10.0)
            n = len(images)
            chunk = new_message(
                "hiwm_msgs/msg/ActionChunk", horizon=1, action_dim=2, dt=0.1, data=acts[k].astype(np.float32)
            )
            cmd.publish(chunk)
            if not node.spin_until(lambda n=n: len(images) > n, 10.0):
                raise RuntimeError(f"no image for step {k}")
        return steps / (time.perf_counter() - start)
    finally:
        node.destroy()
        robot.terminate()
        robot.wait(10)


def bench_write(frames: int) -> float:
    env = PushTEnv(image_size=96)
    obs = env.reset(seed=0)
    images = []
    for a in actions(300):
        images.append(obs.image)
        obs = env.step(a)
    features = pusht_features(96)
    with tempfile.TemporaryDirectory() as tmp:
        writer = LeRobotDatasetWriter(Path(tmp) / "ds", fps=10, features=features, flush_every=10)
        start = time.perf_counter()
        for k in range(frames):
            writer.add_frame(
                {
                    "observation.image": images[k % 300],
                    "observation.state": np.zeros(2),
                    "action": np.zeros(2),
                    "intervention": False,
                    "action.source": 2,
                    "observation.environment_state": np.zeros(5),
                    "next.reward": 0.0,
                    "next.coverage": 0.0,
                    "next.success": False,
                    "next.done": k % 300 == 299,
                }
            )
            if k % 300 == 299:
                writer.save_episode("bench")
        writer.close()
        return frames / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--frames", type=int, default=3000)
    args = parser.parse_args()
    bare = bench_bare(args.steps)
    lockstep = bench_lockstep(args.steps)
    write = bench_write(args.frames)
    out = {
        "bare_env_steps_per_s": round(bare, 1),
        "lockstep_dds_steps_per_s": round(lockstep, 1),
        "ratio": round(lockstep / bare, 3),
        "dataset_write_frames_per_s": round(write, 1),
        "targets_met": {"lockstep_ge_half_bare": lockstep >= 0.5 * bare},
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
