"""The simulated robot node (sim_robot) in its own process over DDS, in lockstep: reset, expert actions, bad input.

Push-T (the default task) in detail; the SO-101 pick task through the same node at the end."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hiwm.comm import create_node, new_message
from hiwm.comm.images import image_to_numpy
from hiwm.comm.qos import KEEP_ALL
from hiwm.tasks import get_task
from hiwm.tasks.chunks import parse_chunk
from hiwm.tasks.pusht.expert import ScriptedExpert

PUSHT = get_task("pusht")
CAMERA = PUSHT.cameras[0].topic  # camera/camera/color/image_raw


class Client:
    """The test's side of the robot's topics: sends chunks, collects every message per step."""

    def __init__(self, node, ns: str = "/robot1", camera: str = CAMERA) -> None:
        self.node = node
        self.images: list = []
        self.states: list = []
        self.task_states: list = []
        self.statuses: list = []
        node.create_subscription("sensor_msgs/msg/Image", f"{ns}/{camera}", self.images.append, KEEP_ALL)
        node.create_subscription("sensor_msgs/msg/JointState", f"{ns}/robot/state", self.states.append, KEEP_ALL)
        node.create_subscription("sensor_msgs/msg/JointState", f"{ns}/task/state", self.task_states.append, KEEP_ALL)
        node.create_subscription("hiwm_msgs/msg/TaskStatus", f"{ns}/task/status", self.statuses.append, KEEP_ALL)
        self.command = node.create_publisher("hiwm_msgs/msg/ActionChunk", f"{ns}/robot/command", KEEP_ALL)
        self.reset_client = node.create_client("hiwm_msgs/srv/Reset", f"{ns}/robot/reset")

    def counts(self) -> tuple[int, int, int, int]:
        return len(self.images), len(self.states), len(self.task_states), len(self.statuses)

    def wait_counts(self, n: int, timeout: float = 10.0) -> bool:
        return self.node.spin_until(lambda: min(self.counts()) >= n, timeout)

    def reset(self, **fields) -> object:
        response = self.reset_client.call(new_message("hiwm_msgs/srv/Reset_Request", **fields), timeout=10.0)
        return response

    def send(self, data, horizon: int = 1, action_dim: int = 2) -> None:
        self.command.publish(
            new_message(
                "hiwm_msgs/msg/ActionChunk",
                header=self.node.header(),
                source=2,
                source_id="test",
                horizon=horizon,
                action_dim=action_dim,
                dt=0.1,
                data=np.asarray(data, dtype=np.float32),
            )
        )


@pytest.fixture
def robot(procs):
    proc = procs.python(
        "hiwm.nodes.sim_robot",
        "--ros-args",
        "-r",
        "__ns:=/robot1",
        "-p",
        "task:=pusht",
        "-p",
        "clock:=lockstep",
        "-p",
        "image_size:=64",
    )
    node = create_node("sim_robot_test_client")
    client = Client(node)
    assert client.reset_client.wait_for_service(30.0), procs.output(proc)
    node.spin_until(lambda: client.command.matched_count() > 0, 10.0)
    yield proc, client
    node.destroy()
    assert proc.poll() is None, "the robot node died:\n" + procs.output(proc)


def test_reset_then_expert_raises_coverage_one_image_per_step(robot):
    _, client = robot
    response = client.reset(seed=3)
    assert response.success, response.message
    assert len(response.episode_id) > 0
    assert client.wait_counts(1), client.counts()
    status = client.statuses[-1]
    assert (status.episode_id, status.step, status.world) == (response.episode_id, 0, "real")
    expert = ScriptedExpert(seed=0)
    start_coverage = status.coverage
    steps = 60
    for k in range(1, steps + 1):
        state = np.asarray(client.task_states[-1].position)
        assert list(client.task_states[-1].name) == ["agent_x", "agent_y", "block_x", "block_y", "block_theta"]
        client.send(expert.act(state))
        assert client.wait_counts(k + 1), f"step {k}: {client.counts()}"
        assert client.statuses[-1].step == k
    assert client.counts() == (steps + 1,) * 4  # exactly one of each per step, nothing lost
    assert [s.step for s in client.statuses] == list(range(steps + 1))
    image = image_to_numpy(client.images[-1], expect=(64, 64))
    assert image.dtype == np.uint8 and image.std() > 0
    assert client.images[-1].header.stamp == client.statuses[-1].header.stamp
    assert list(client.states[-1].name) == ["agent_x", "agent_y"]
    np.testing.assert_allclose(client.states[-1].position, client.task_states[-1].position[:2])
    assert client.statuses[-1].max_coverage > start_coverage + 0.2


def test_reset_to_state_and_chunks(robot):
    _, client = robot
    state = [100.0, 100.0, 300.0, 300.0, 0.5]
    response = client.reset(use_state=True, state=np.array(state))
    assert response.success, response.message
    assert client.wait_counts(1)
    np.testing.assert_allclose(client.task_states[-1].position, state, atol=1e-6)
    client.send([100.0, 120.0, 100.0, 140.0, 100.0, 160.0], horizon=3)  # one chunk, three steps
    assert client.wait_counts(4)
    assert [s.step for s in client.statuses] == [0, 1, 2, 3]
    assert client.states[-1].position[1] > 120.0
    bad = client.reset(use_state=True, state=np.array([1.0, 2.0]))
    assert not bad.success and "5" in bad.message


def test_bad_actions_are_refused_or_clamped_and_the_node_keeps_answering(robot, procs):
    proc, client = robot
    assert client.reset(seed=1).success
    assert client.wait_counts(1)
    client.send([math.nan, 100.0])
    client.send([math.inf, 100.0])
    client.send([100.0, 100.0, 5.0], horizon=1, action_dim=3)  # wrong action_dim
    client.send([100.0, 100.0, 5.0], horizon=2)  # data length != horizon * action_dim
    client.send([100.0, 100.0], horizon=0)
    client.send([-50.0, 900.0])  # outside the workspace: clamped, executed
    assert client.wait_counts(2)
    assert not client.node.spin_until(lambda: min(client.counts()) > 2, 0.5)  # the refused ones ran nothing
    assert client.statuses[-1].step == 1
    client.send([200.0, 200.0])
    assert client.wait_counts(3), "the node stopped answering after bad input"
    log = procs.output(proc)
    assert "finite" in log and "action_dim" in log and "clamped" in log
    assert proc.poll() is None


def test_parse_chunk_refuses_malformed_chunks():
    rows, warnings = parse_chunk(PUSHT.action, 2, 2, [1.0, 2.0, 600.0, 3.0])
    np.testing.assert_allclose(rows, [[1, 2], [512, 3]])
    assert len(warnings) == 1 and "row 1" in warnings[0]
    for horizon, dim, data, reason in [
        (1, 2, [math.nan, 1.0], "finite"),
        (1, 3, [1.0, 2.0, 3.0], "action_dim"),
        (2, 2, [1.0, 2.0], "expected"),
        (0, 2, [], "horizon"),
    ]:
        with pytest.raises(ValueError, match=reason):
            parse_chunk(PUSHT.action, horizon, dim, data)


@pytest.mark.probe("robot/reset with an explicit state [1e30]*5 and other states off the workspace",
                   "refused with a clear message; the robot keeps its episode and keeps answering")  # fmt: skip
def test_reset_states_outside_the_workspace_are_refused(robot, procs):
    proc, client = robot
    good = client.reset(seed=2)
    assert good.success and client.wait_counts(1)
    for state in ([1e30] * 5, [100.0, 100.0, -1.0, 300.0, 0.0], [100.0, 600.0, 300.0, 300.0, 0.0],
                  [100.0, 100.0, 300.0, 300.0, 1e9]):  # fmt: skip
        bad = client.reset(use_state=True, state=np.array(state))
        assert not bad.success and bad.episode_id == "", bad.message
        assert "refused" in bad.message and ("[0, 512]" in bad.message or "angle" in bad.message), bad.message
    assert not client.node.spin_until(lambda: min(client.counts()) > 1, 0.5)  # nothing was published
    client.send([200.0, 200.0])
    assert client.wait_counts(2) and client.statuses[-1].episode_id == good.episode_id
    assert "refused reset" in procs.output(proc) and proc.poll() is None


def test_the_same_node_serves_the_arm_task(procs):
    """task:=so101_pick: the MuJoCo arm on the same contract, its camera, joints and 6-D chunks."""
    from hiwm.tasks.so101.expert import ArmExpert

    arm = get_task("so101_pick")
    ns = "/sim_arm"
    proc = procs.python("hiwm.nodes.sim_robot", "--ros-args", "-r", f"__ns:={ns}", "-p", "task:=so101_pick",
                        "-p", "clock:=lockstep", "-p", "image_size:=48")  # fmt: skip
    node = create_node("sim_arm_test_client")
    client = Client(node, ns, arm.cameras[0].topic)  # camera/front/color/image_raw
    try:
        assert client.reset_client.wait_for_service(60.0), procs.output(proc)
        node.spin_until(lambda: client.command.matched_count() > 0, 10.0)
        response = client.reset(seed=4)
        assert response.success, response.message
        assert client.wait_counts(1, 30.0), (client.counts(), procs.output(proc))
        assert list(client.states[-1].name) == list(arm.observations.proprio)
        assert list(client.task_states[-1].name) == list(arm.observations.state)
        expert = ArmExpert(seed=0)
        steps = 5
        for k in range(1, steps + 1):
            client.send(expert.act(np.asarray(client.task_states[-1].position)), action_dim=6)
            assert client.wait_counts(k + 1, 30.0), f"step {k}: {client.counts()}\n{procs.output(proc)}"
        assert client.counts() == (steps + 1,) * 4 and [s.step for s in client.statuses] == list(range(steps + 1))
        image = image_to_numpy(client.images[-1], expect=(48, 48))
        assert image.std() > 0 and client.images[-1].header.stamp == client.statuses[-1].header.stamp
        np.testing.assert_allclose(client.states[-1].position, client.task_states[-1].position[:6])
        assert client.statuses[-1].max_coverage >= client.statuses[-1].coverage  # the cube's lift, best so far
        client.send([100.0, 100.0])  # a Push-T action: the wrong action_dim, refused
        assert not node.spin_until(lambda: min(client.counts()) > steps + 1, 1.0)
        placed = np.asarray(client.task_states[-1].position).copy()
        placed[0], placed[6] = 0.4, 0.2  # pan the arm, move the cube: reset by task state
        assert client.reset(use_state=True, state=placed).success
        assert client.wait_counts(steps + 2, 30.0)
        np.testing.assert_allclose(client.task_states[-1].position[[0, 6]], [0.4, 0.2], atol=1e-6)
        bad = client.reset(use_state=True, state=np.array([1.0, 2.0]))
        assert not bad.success and "13" in bad.message
        assert "action_dim must be 6" in procs.output(proc) and proc.poll() is None
    finally:
        node.destroy()
