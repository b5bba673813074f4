"""ros2_control bridge benchmark: planning cost (IK + limits) per chunk, and chunk -> JointTrajectory latency
between processes over DDS (a peer publishes /joint_states and commands, the bridge runs in its own process).

Prints one JSON object.

    python bench/ros2_control_bridge.py [--chunks 200] [--horizon 8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from hiwm.comm import KEEP_ALL, create_node, new_message
from hiwm.nodes.ros2_control_bridge import Ros2ControlBridgeConfig


def pct(values: list[float]) -> dict:
    ms = np.asarray(values) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def plan_cost(horizon: int, n: int = 200) -> dict:
    bridge = Ros2ControlBridgeConfig().bridge()
    bridge.on_joint_state(["joint1", "joint2"], [0.2, 0.8])
    rng = np.random.default_rng(0)
    times, last = [], np.array([256.0, 256.0])
    for _ in range(n):  # a stream of chunks, each from where the last one ended (as on a real arm)
        rows = last + np.cumsum(rng.normal(0, 8, (horizon, 2)), axis=0)
        last = np.clip(rows[-1], 32, 480)
        t0 = time.perf_counter()
        plan = bridge.plan(horizon, 2, 0.1, rows.reshape(-1), now=0.0)
        times.append(time.perf_counter() - t0)
        bridge.on_joint_state(["joint1", "joint2"], plan.positions[-1])
    return pct(times)


def latency(chunks: int, horizon: int) -> dict:
    env = {**os.environ, "ROS_DOMAIN_ID": os.environ.get("ROS_DOMAIN_ID", str(1 + os.getpid() % 200))}
    os.environ["ROS_DOMAIN_ID"] = env["ROS_DOMAIN_ID"]
    bridge = subprocess.Popen(
        [sys.executable, "-m", "hiwm.nodes.ros2_control_bridge", "--ros-args", "-p", "stale_after_s:=60.0"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    node = create_node("bridge_bench")
    arrivals: list[float] = []
    node.create_subscription(
        "trajectory_msgs/msg/JointTrajectory", "/joint_trajectory_controller/joint_trajectory",
        lambda _m: arrivals.append(time.perf_counter()), KEEP_ALL, raw=True,
    )  # fmt: skip
    states = node.create_publisher("sensor_msgs/msg/JointState", "/joint_states")
    command = node.create_publisher("hiwm_msgs/msg/ActionChunk", "robot/command", KEEP_ALL)
    state = new_message("sensor_msgs/msg/JointState", name=["joint1", "joint2"], position=np.array([0.2, 0.8]))
    node.create_timer(0.02, lambda: states.publish(state))
    try:
        if not node.spin_until(lambda: command.matched_count() > 0, 30.0):
            raise RuntimeError("the bridge did not come up")
        node.spin_until(lambda: False, 0.5)
        rng = np.random.default_rng(0)
        sent: list[float] = []
        for _ in range(chunks):
            rows = (256 + np.cumsum(rng.normal(0, 8, (horizon, 2)), axis=0)).astype(np.float32)
            msg = new_message(
                "hiwm_msgs/msg/ActionChunk", source=0, horizon=horizon, action_dim=2, dt=0.1, data=rows.reshape(-1)
            )
            sent.append(time.perf_counter())
            command.publish(msg)
            expected = len(sent)
            node.spin_until(lambda: len(arrivals) >= expected, 2.0)  # noqa: B023 (used at once)
            node.spin_until(lambda: False, 0.01)
        got = min(len(arrivals), len(sent))
        return {
            "chunks": chunks,
            "received": len(arrivals),
            **pct([a - s for a, s in zip(arrivals[:got], sent[:got], strict=True)]),
        }
    finally:
        node.destroy()
        bridge.terminate()
        bridge.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunks", type=int, default=200)
    ap.add_argument("--horizon", type=int, default=8)
    args = ap.parse_args()
    result = {
        "bench": "ros2_control_bridge",
        "horizon": args.horizon,
        "plan": plan_cost(args.horizon),
        "chunk_to_trajectory": latency(args.chunks, args.horizon),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
