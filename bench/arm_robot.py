"""Arm robot benchmark: the arm_robot node in lockstep over DDS next to the bare env, in one run.

The same episodes (seeded resets, a slow sweep of all six joints, one image per step) are run by the
bare So101PickEnv in this process, then by the node in its own process, commanded over DDS with a
forward position command per step (and with 10-point joint trajectories), each step waited for
until its camera image has arrived. The three alternate for ``--rounds`` rounds, so a shared
machine's load falls on all of them alike; medians are reported. Prints one JSON object.
Target: node >= 0.5 x the bare env.

    python bench/arm_robot.py [--steps 300] [--rounds 3] [--task so101_pick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from hiwm.comm import backend_name, create_node, new_message
from hiwm.comm.qos import KEEP_ALL
from hiwm.robot.ros2_control import forward_command, joint_trajectory
from hiwm.tasks import get_task, make_joint_env


def sweep(start: np.ndarray, k: int, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """The k-th target of a slow sweep of every joint around ``start``."""
    return np.clip(start + 0.3 * np.sin(0.1 * k + np.arange(start.size)), low, high)


def bare_rate(task: str, steps: int) -> float:
    env = make_joint_env(task)
    env.reset(seed=0)  # the first frame builds the GL context: not part of the rate
    done, seed, start = 0, 0, time.perf_counter()
    while done < steps:
        obs = env.reset(seed=seed)
        home = obs.joints.copy()
        k = 0
        while not obs.done and done < steps:
            k += 1
            obs = env.step(sweep(home, k, env.low, env.high))
            done += 1
        seed += 1
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


class Driver:
    def __init__(self, task: str) -> None:
        self.task = get_task(task)
        self.names = list(self.task.action.names)
        self.low, self.high = np.asarray(self.task.action.low), np.asarray(self.task.action.high)
        self.node = create_node("arm_robot_bench")
        self.images: list = []
        self.joints: list = []
        camera = self.task.cameras[0].topic
        # The driver only counts frames (raw CDR): its own decoding is not the robot's cost.
        self.node.create_subscription("sensor_msgs/msg/Image", camera, self.images.append, KEEP_ALL, raw=True)
        self.node.create_subscription("sensor_msgs/msg/JointState", "/joint_states", self.joints.append, KEEP_ALL)
        self.forward = self.node.create_publisher(
            "std_msgs/msg/Float64MultiArray", "/forward_position_controller/commands", KEEP_ALL
        )
        self.trajectory = self.node.create_publisher(
            "trajectory_msgs/msg/JointTrajectory", "/joint_trajectory_controller/joint_trajectory", KEEP_ALL
        )
        self.reset_client = self.node.create_client("hiwm_msgs/srv/Reset", "robot/reset")

    def wait_images(self, n: int) -> None:
        if not self.node.spin_until(lambda: len(self.images) >= n, 30.0):
            raise RuntimeError(f"the arm robot stopped answering ({len(self.images)} of {n} images)")

    def reset(self, seed: int) -> np.ndarray:
        self.images.clear()
        self.joints.clear()
        response = self.reset_client.call(new_message("hiwm_msgs/srv/Reset_Request", seed=seed), timeout=30.0)
        assert response.success, response.message
        self.wait_images(1)
        self.node.spin_until(lambda: bool(self.joints), 10.0)
        return np.asarray(self.joints[-1].position)

    def rate(self, steps: int, points: int) -> float:
        """Steps/s commanding ``points`` steps per message (1: forward commands, else trajectories)."""
        self.reset(0)  # warm: matched, rendering
        done, seed, start = 0, 0, time.perf_counter()
        while done < steps:
            home = self.reset(seed)
            k = 0
            while k < self.task.episode_steps and done < steps:
                n = min(points, self.task.episode_steps - k, steps - done)
                rows = np.array([sweep(home, k + i + 1, self.low, self.high) for i in range(n)])
                if points == 1:
                    self.forward.publish(forward_command(rows[0]))
                else:
                    times = 0.1 * np.arange(1, n + 1)
                    self.trajectory.publish(joint_trajectory(self.names, times, rows, self.node.header()))
                k += n
                done += n
                self.wait_images(k + 1)
            seed += 1
        return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="so101_pick")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    rates: dict[str, list[float]] = {"bare": [], "forward": [], "trajectory": []}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hiwm.nodes.arm_robot", "--ros-args", "-p", f"task:={args.task}",
         "-p", "clock:=lockstep"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        driver = Driver(args.task)
        if not driver.reset_client.wait_for_service(60.0):
            raise RuntimeError("the arm robot node did not come up")
        driver.node.spin_until(lambda: driver.forward.matched_count() and driver.trajectory.matched_count(), 20.0)
        for _ in range(args.rounds):
            rates["bare"].append(bare_rate(args.task, args.steps))
            rates["forward"].append(driver.rate(args.steps, 1))
            rates["trajectory"].append(driver.rate(args.steps, 10))
        driver.node.destroy()
    finally:
        proc.terminate()
        proc.wait(10)
    bare, forward, trajectory = (float(np.median(rates[k])) for k in ("bare", "forward", "trajectory"))
    print(
        json.dumps(
            {
                "bench": "arm_robot",
                "task": args.task,
                "backend": backend_name(),
                "steps": args.steps,
                "rounds": args.rounds,
                "env_steps_per_s": round(bare, 1),
                "node_lockstep_forward_steps_per_s": round(forward, 1),
                "node_lockstep_trajectory10_steps_per_s": round(trajectory, 1),
                "ratio_forward": round(forward / bare, 3),
                "ratio_trajectory10": round(trajectory / bare, 3),
                "target_ratio": 0.5,
                "meets_target": forward / bare >= 0.5,
                "per_round": {k: [round(v, 1) for v in r] for k, r in rates.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
