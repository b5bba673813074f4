"""The policy server driving the simulated robot node in lockstep, both in their own processes over DDS:
Push-T (the default task) with our checkpoints and an outside policy, and the SO-101 arm task."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hiwm.comm import create_node, new_message
from hiwm.comm.qos import KEEP_ALL
from hiwm.policy import build_model, save_checkpoint

TINY = {
    "image_size": 16,
    "crop": 14,
    "channels": [8, 16],
    "keypoints": 4,
    "feature_dim": 8,
    "down_dims": [16, 32],
    "step_embed_dim": 16,
    "inference_steps": 2,
    "horizon": 8,
    "n_action_steps": 4,
}


def tiny_policy(path) -> str:
    """A tiny untrained diffusion checkpoint with workspace-range normalization."""
    model = build_model("diffusion", TINY)
    corners = np.array([[0.0, 0.0], [512.0, 512.0]])
    model.state_norm.fit(corners)
    model.action_norm.fit(corners)
    return str(save_checkpoint(path, model))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return tiny_policy(tmp_path_factory.mktemp("ckpt") / "tiny")


class Watcher:
    def __init__(self) -> None:
        self.node = create_node("policy_server_test")
        self.commands: list = []
        self.statuses: list = []
        self.node.create_subscription("hiwm_msgs/msg/ActionChunk", "/r/robot/command", self.commands.append, KEEP_ALL)
        self.node.create_subscription("hiwm_msgs/msg/TaskStatus", "/r/task/status", self.statuses.append, KEEP_ALL)
        self.reset = self.node.create_client("hiwm_msgs/srv/Reset", "/r/robot/reset")
        self.stats = self.node.create_client("std_srvs/srv/Trigger", "/r/policy_server/stats")


def start(procs, checkpoint: str, *params: str, task: str = "pusht", image_size: int = 32):
    robot = procs.python("hiwm.nodes.sim_robot", "--ros-args", "-r", "__ns:=/r", "-p", f"task:={task}",
                         "-p", "clock:=lockstep", "-p", f"image_size:={image_size}")  # fmt: skip
    args = ["--ros-args", "-r", "__ns:=/r", "-r", "policy/action:=robot/command", "-p", f"policy:={checkpoint}",
            "-p", f"task:={task}"]  # fmt: skip
    for p in params:
        args += ["-p", p]
    server = procs.python("hiwm.nodes.policy_server", *args)
    watcher = Watcher()
    assert watcher.reset.wait_for_service(30.0), procs.output(robot)
    assert watcher.stats.wait_for_service(30.0), procs.output(server)
    return robot, server, watcher


def run_steps(procs, robot, server, watcher, steps: int) -> None:
    response = watcher.reset.call(new_message("hiwm_msgs/srv/Reset_Request", seed=0), timeout=10.0)
    assert response.success, response.message
    ok = watcher.node.spin_until(lambda: watcher.statuses and watcher.statuses[-1].step >= steps, 30.0)
    assert ok, f"robot stuck at {[s.step for s in watcher.statuses][-3:]}:\n{procs.output(server)}"
    assert robot.poll() is None and server.poll() is None


def test_policy_server_drives_robot_in_chunks(procs, checkpoint):
    robot, server, watcher = start(procs, checkpoint)
    run_steps(procs, robot, server, watcher, 12)
    chunks = list(watcher.commands)
    assert len(chunks) >= 3
    for chunk in chunks:
        assert (chunk.horizon, chunk.action_dim, chunk.source) == (4, 2, 0)
        assert chunk.source_id == checkpoint
        data = np.asarray(chunk.data)
        assert data.shape == (8,) and np.all(np.isfinite(data))
    # lockstep: one query per executed chunk, every step's status seen once, in order
    steps = [s.step for s in watcher.statuses]
    assert steps[: steps[-1] + 1] == list(range(steps[-1] + 1))
    stats = json.loads(watcher.stats.call(new_message("std_srvs/srv/Trigger_Request"), timeout=10.0).message)
    assert stats["queries"] >= 3 and stats["latency_ms_p50"] > 0
    assert stats["resized"] >= stats["observations"] > 0  # the robot's 32 px frames, resized to 96
    assert stats["episodes"] == 1 and stats["refused"] == {}
    assert "resized to 96" in procs.output(server)
    watcher.node.destroy()


def test_outside_policy_through_the_adapter_seam(procs, checkpoint):
    args = json.dumps({"checkpoint": checkpoint, "rows": 3})
    robot, server, watcher = start(
        procs, "tests.peers.outside_policy:OutsidePolicy", f"policy_args:='{args}'", "image_size:=32"
    )
    run_steps(procs, robot, server, watcher, 9)
    assert len(watcher.commands) >= 3
    assert all((c.horizon, c.action_dim) == (3, 2) for c in watcher.commands)
    assert watcher.commands[0].source_id == "tests.peers.outside_policy:OutsidePolicy"
    stats = json.loads(watcher.stats.call(new_message("std_srvs/srv/Trigger_Request"), timeout=10.0).message)
    assert stats["resized"] == 0 and stats["queries"] >= 3
    watcher.node.destroy()


def test_the_arm_task_gets_six_joint_chunks(procs):
    """task:=so101_pick: the server joins the arm's camera topic and six joints; its chunks are six wide."""
    robot, server, watcher = start(procs, "tests.peers.hold_policy:HoldPolicy", task="so101_pick", image_size=40)
    run_steps(procs, robot, server, watcher, 4)
    assert all((c.horizon, c.action_dim, c.source) == (1, 6, 0) for c in watcher.commands)
    assert abs(watcher.commands[0].dt - 0.1) < 1e-6  # the task's control period
    stats = json.loads(watcher.stats.call(new_message("std_srvs/srv/Trigger_Request"), timeout=10.0).message)
    assert stats["queries"] >= 4 and stats["refused"] == {}
    assert stats["resized"] >= stats["observations"]  # the robot's 40 px frames, to the camera's 128
    assert "resized to 128" in procs.output(server)
    watcher.node.destroy()


def test_bad_checkpoint_fails_with_a_clear_line(procs, tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    proc = procs.python("hiwm.nodes.policy_server", "--ros-args", "-p", f"policy:={tmp_path}")
    assert proc.wait(60) == 2
    assert "unreadable checkpoint config" in procs.output(proc)
