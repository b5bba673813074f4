"""The whole Hi-WM graph on the arm task (``task:=so101_pick``) under `hiwm launch`, in both worlds.

Real world: arm_robot (the MuJoCo SO-101 behind a lab arm's topics) driven through ros2_control_bridge,
exactly as a real arm. Model world: an arm world model. In both, an outside policy served by module:Class
drives the joints through the arbiter, the recorder records the arm's layout (6-D joint actions, the
``front`` camera's video), and in the model the branch cache holds every state.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import pytest
from conftest import wait_for
from test_playground import free_port
from test_worlds import arm_checkpoint

from hiwm.branch_cache.store import BranchStore
from hiwm.comm import create_node, new_message
from hiwm.data import LeRobotDataset, verify
from hiwm.tasks import get_task

ARM = get_task("so101_pick")
POLICY_MODULE = '''
import numpy as np


class HoldPolicy:
    """Commands the joints where they are, two rows a chunk."""

    def reset(self):
        pass

    def act(self, observation):
        return np.repeat(np.asarray(observation["state"], dtype=np.float64)[None], 2, axis=0)
'''


def queries(stats) -> int:
    """The observations the policy server has answered so far (its ``~/stats``)."""
    return json.loads(stats.call(new_message("std_srvs/srv/Trigger_Request"), timeout=10).message)["queries"]


@pytest.mark.parametrize("world", ["real", "model"])
def test_the_hiwm_graph_serves_the_arm_task_in_both_worlds(procs, tmp_path, world):
    (tmp_path / "arm_hold_policy.py").write_text(POLICY_MODULE)
    wm = tmp_path / "wm"
    if world == "model":
        arm_checkpoint(wm, ARM.cameras[0].height)  # at the camera's size, as the recorder records it
    ns = f"/arm_{world}"
    args = [
        sys.executable, "-m", "hiwm.cli.main", "launch", "hiwm", f"world:={world}", "task:=so101_pick",
        "robot:=so101", f"namespace:={ns}", f"world_model:={wm}", "policy:=arm_hold_policy:HoldPolicy",
        "clock:=lockstep", f"port:={free_port()}", "teleop:=false", "use_status:=true",
        f"dataset:={tmp_path / 'ds'}", f"bag:={tmp_path / 'bag'}", f"db:={tmp_path / 'cache.db'}",
    ]  # fmt: skip
    path = f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    launcher = procs.start(*args, name=f"arm_{world}", env={"PYTHONPATH": path})
    node = create_node(f"arm_graph_test_{world}")
    try:
        stats = node.create_client("std_srvs/srv/Trigger", f"{ns}/policy_server/stats")
        assert stats.wait_for_service(90.0), procs.output(launcher)
        reset = node.create_client("hiwm_msgs/srv/Reset", f"{ns}/robot/reset")
        assert reset.wait_for_service(90.0), procs.output(launcher)
        time.sleep(1.0)  # lockstep: the first observation must find the policy listening
        assert reset.call(new_message("hiwm_msgs/srv/Reset_Request", seed=3), timeout=30.0).success
        assert wait_for(lambda: queries(stats) >= 4, timeout=90, interval=0.2), procs.output(launcher)
        assert reset.call(new_message("hiwm_msgs/srv/Reset_Request", seed=4), timeout=30.0).success
        time.sleep(1.5)
    finally:
        node.destroy()
    launcher.send_signal(signal.SIGINT)
    assert launcher.wait(30) == 0, procs.output(launcher)

    ds = LeRobotDataset(tmp_path / "ds")
    assert ds.num_episodes >= 1 and verify(tmp_path / "ds").ok
    assert ds.features["action"]["shape"] == [ARM.action_dim]
    assert ds.features["action"]["names"] == list(ARM.action.names)
    assert "observation.images.front" in ds.features
    episode = ds.episode(0, videos=False)
    assert len(episode["action"]) >= 4 and (episode["action.source"] == 0).all()  # the policy drove every step
    if world == "model":
        with BranchStore(tmp_path / "cache.db", readonly=True) as store:
            sessions = store.sessions()
            assert sessions and max(len(store.trajectory(b.id)) for b in store.branches()) >= 4


def test_the_shipped_models_serve_the_arm_graph_with_no_paths(procs, tmp_path):
    """`hiwm launch hiwm world:=model task:=so101_pick` as the README gives it: the world model and the
    policy are the ones hiwm ships for the task."""
    from hiwm.paths import shipped_model

    assert shipped_model(ARM.name, "world_model") and shipped_model(ARM.name, "act"), "hiwm ships the arm's models"
    ns = "/arm_shipped"
    args = [
        sys.executable, "-m", "hiwm.cli.main", "launch", "hiwm", "world:=model", "task:=so101_pick",
        f"namespace:={ns}", "clock:=lockstep", "teleop:=false", "record:=false", f"db:={tmp_path / 'cache.db'}",
    ]  # fmt: skip
    launcher = procs.start(*args, name="arm_shipped")
    node = create_node("arm_shipped_test")
    try:
        stats = node.create_client("std_srvs/srv/Trigger", f"{ns}/policy_server/stats")
        reset = node.create_client("hiwm_msgs/srv/Reset", f"{ns}/robot/reset")
        assert stats.wait_for_service(90.0) and reset.wait_for_service(90.0), procs.output(launcher)
        time.sleep(1.0)  # lockstep: the first observation must find the policy listening
        assert reset.call(new_message("hiwm_msgs/srv/Reset_Request", seed=5), timeout=30.0).success
        assert wait_for(lambda: queries(stats) >= 4, timeout=90, interval=0.2), procs.output(launcher)
    finally:
        node.destroy()
    launcher.send_signal(signal.SIGINT)
    assert launcher.wait(30) == 0, procs.output(launcher)
    with BranchStore(tmp_path / "cache.db", readonly=True) as store:
        assert max(len(store.trajectory(b.id)) for b in store.branches()) >= 4  # the model's states, cached
