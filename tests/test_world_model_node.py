"""The world-model node in its own process over DDS, lockstep: the task's robot contract, handles,
exact restore; a Push-T model and an SO-101 arm model."""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import pytest
import torch

from hiwm.comm import create_node, new_message
from hiwm.comm.images import image_to_numpy
from hiwm.comm.qos import KEEP_ALL
from hiwm.tasks import get_task
from hiwm.tasks.world import load_world
from hiwm.world_model import checkpoint as ckpt_io
from hiwm.world_model.config import ModelConfig, ProbeConfig, WorldModelTrainConfig
from hiwm.world_model.model import WorldModel
from hiwm.world_model.probe import StateProbe

NS = "/wm1"
TINY = ModelConfig(latent_channels=4, enc_channels=(8, 8, 8), dyn_channels=8, dyn_blocks=1, dec_channels=(8, 8, 8))


def tiny_checkpoint(path, cfg: ModelConfig = TINY, probe_cfg: ProbeConfig | None = None) -> None:
    """An untrained but non-trivial model and probe (random weights): the contract does not need skill."""
    torch.manual_seed(0)
    model = WorldModel(cfg)
    probe = StateProbe(probe_cfg or ProbeConfig(channels=(4, 4, 4, 4), hidden=8))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ckpt_io.save(path, ckpt_io.Checkpoint(cfg, WorldModelTrainConfig(), probe.cfg), model, probe)


def image_topic(task: str) -> str:
    """The task's (first) camera topic, as its world's contract names it."""
    return next(t for t, kind in load_world(get_task(task)).topics().items() if kind == "sensor_msgs/msg/Image")


class Client:
    def __init__(self, node, ns: str = NS, task: str = "pusht") -> None:
        self.node, self.ns = node, ns
        self.images: list = []
        self.states: list = []
        self.task_states: list = []
        self.statuses: list = []
        self.handles: list = []
        sub = node.create_subscription
        sub("sensor_msgs/msg/Image", f"{ns}/{image_topic(task)}", self.images.append, KEEP_ALL)
        sub("sensor_msgs/msg/JointState", f"{ns}/robot/state", self.states.append, KEEP_ALL)
        sub("sensor_msgs/msg/JointState", f"{ns}/task/state", self.task_states.append, KEEP_ALL)
        sub("hiwm_msgs/msg/TaskStatus", f"{ns}/task/status", self.statuses.append, KEEP_ALL)
        sub("hiwm_msgs/msg/StateHandle", f"{ns}/world_model/state", self.handles.append, KEEP_ALL)
        self.command = node.create_publisher("hiwm_msgs/msg/ActionChunk", f"{ns}/robot/command", KEEP_ALL)
        self.reset_client = node.create_client("hiwm_msgs/srv/Reset", f"{ns}/robot/reset")
        self.restore_client = node.create_client("hiwm_msgs/srv/Restore", f"{ns}/world_model/restore")

    def counts(self) -> tuple[int, ...]:
        return len(self.images), len(self.states), len(self.task_states), len(self.statuses), len(self.handles)

    def wait_counts(self, n: int, timeout: float = 15.0) -> bool:
        return self.node.spin_until(lambda: min(self.counts()) >= n, timeout)

    def clear(self) -> None:
        for stream in (self.images, self.states, self.task_states, self.statuses, self.handles):
            stream.clear()

    def reset(self, **fields) -> object:
        return self.reset_client.call(new_message("hiwm_msgs/srv/Reset_Request", **fields), timeout=15.0)

    def restore(self, snapshot_id: str) -> object:
        request = new_message("hiwm_msgs/srv/Restore_Request", snapshot_id=snapshot_id)
        return self.restore_client.call(request, timeout=15.0)

    def send(self, data, horizon: int = 1, action_dim: int = 2) -> None:
        self.command.publish(
            new_message(
                "hiwm_msgs/msg/ActionChunk",
                header=self.node.header(),
                source=1,
                source_id="test",
                horizon=horizon,
                action_dim=action_dim,
                dt=0.1,
                data=np.asarray(data, dtype=np.float32),
            )
        )


@pytest.fixture
def world(procs, tmp_path):
    tiny_checkpoint(tmp_path / "ckpt")
    proc = procs.python(
        "hiwm.nodes.world_model",
        "--ros-args",
        "-r",
        f"__ns:={NS}",
        "-p",
        "clock:=lockstep",
        "-p",
        f"checkpoint:={tmp_path / 'ckpt'}",
        "-p",
        "seed:=1",
    )
    node = create_node("world_model_test_client")
    client = Client(node)
    assert client.reset_client.wait_for_service(40.0), procs.output(proc)
    assert client.restore_client.wait_for_service(10.0), procs.output(proc)
    node.spin_until(lambda: client.command.matched_count() > 0, 10.0)
    yield proc, client
    node.destroy()
    assert proc.poll() is None, "the world-model node died:\n" + procs.output(proc)


def test_robot_contract_handles_and_bit_identical_restore(world):
    _, client = world
    client.clear()
    state = [120.0, 380.0, 300.0, 260.0, 0.7]
    response = client.reset(use_state=True, state=np.array(state))
    assert response.success, response.message
    assert client.wait_counts(1), client.counts()
    status, handle = client.statuses[-1], client.handles[-1]
    assert (status.episode_id, status.step, status.world) == (response.episode_id, 0, "model")
    assert (handle.step, handle.parent_snapshot_id, handle.session_id) == (0, "", response.episode_id)
    assert list(client.task_states[-1].name) == ["agent_x", "agent_y", "block_x", "block_y", "block_theta"]
    assert image_to_numpy(client.images[-1], expect=(96, 96)).dtype == np.uint8
    plan = np.random.default_rng(0).uniform(60, 450, size=(6, 2))
    client.send(plan[:3].reshape(-1), horizon=3)  # one chunk, three steps
    for k in range(3, 6):
        client.send(plan[k])
    assert client.wait_counts(7), client.counts()
    assert client.counts() == (7,) * 5  # one of each per step, nothing lost
    assert [h.step for h in client.handles] == list(range(7))
    assert all(h.parent_snapshot_id == p.snapshot_id for p, h in zip(client.handles, client.handles[1:], strict=False))
    np.testing.assert_allclose(client.handles[3].action, plan[2], rtol=1e-6)
    assert client.handles[3].action_source == 1
    assert client.images[-1].header.stamp == client.statuses[-1].header.stamp == client.handles[-1].header.stamp
    frames = [image_to_numpy(m) for m in client.images]
    ids = [h.snapshot_id for h in client.handles]
    assert len(set(ids)) == 7

    answer = client.restore(ids[2])
    assert answer.success and answer.step == 2, answer.message
    assert client.wait_counts(8)
    assert client.handles[-1].snapshot_id == ids[2] and client.statuses[-1].step == 2
    assert np.array_equal(image_to_numpy(client.images[-1]), frames[2])
    for k in range(2, 6):  # replay: the same frames and the same content ids, bit for bit
        client.send(plan[k])
    assert client.wait_counts(12), client.counts()
    assert [h.snapshot_id for h in client.handles[8:]] == ids[3:]
    assert all(np.array_equal(image_to_numpy(m), f) for m, f in zip(client.images[8:], frames[3:], strict=True))


def test_bad_input_is_refused_and_the_node_keeps_answering(world, procs, tmp_path):
    proc, client = world
    assert client.reset(seed=3).success
    assert client.wait_counts(1)
    client.clear()
    client.send([math.nan, 100.0])
    client.send([100.0, 100.0, 5.0], horizon=1, action_dim=3)
    assert not client.node.spin_until(lambda: max(client.counts()) > 0, 0.7)
    bad = client.restore("0" * 32)
    assert not bad.success and "unknown" in bad.message
    bad = client.reset(use_state=True, state=np.array([1.0, 2.0]))
    assert not bad.success and "5" in bad.message
    bad = client.reset(dataset=str(tmp_path / "no-such-dataset"), frame_index=0)
    assert not bad.success and "dataset" in bad.message
    client.send([-50.0, 900.0])  # clamped, executed
    assert client.wait_counts(1), "the node stopped answering after bad input"
    np.testing.assert_allclose(client.handles[-1].action, [0.0, 512.0])
    log = procs.output(proc)
    assert "finite" in log and "action_dim" in log and "unknown snapshot" in log


def test_reset_from_a_dataset_frame(world, tmp_path):
    from hiwm.data.collect import CollectConfig, collect

    _, client = world
    collect(CollectConfig(episodes=1, max_steps=12, seed=0), tmp_path / "ds")
    client.clear()
    response = client.reset(dataset=str(tmp_path / "ds"), frame_index=5)
    assert response.success, response.message
    assert client.wait_counts(1)
    assert client.statuses[-1].step == 0 and client.statuses[-1].episode_id == response.episode_id
    bad = client.reset(dataset=str(tmp_path / "ds"), frame_index=10_000)
    assert not bad.success and "frame_index" in bad.message


@pytest.mark.probe("world model robot/reset with an explicit state [1e30]*5", "refused with a clear message")
def test_reset_states_outside_the_workspace_are_refused(world, procs):
    proc, client = world
    assert client.reset(seed=3).success
    for state in ([1e30] * 5, [100.0, 100.0, 300.0, 1e6, 0.0]):
        bad = client.reset(use_state=True, state=np.array(state))
        assert not bad.success and "[0, 512]" in bad.message and "refused" in bad.message, bad.message
    assert client.reset(use_state=True, state=np.array([100.0, 100.0, 300.0, 300.0, 0.5])).success
    assert "refused reset" in procs.output(proc) and proc.poll() is None


# -- a world model of the SO-101 arm ------------------------------------------------------------
ARM_NS = "/wm_arm"


@pytest.fixture
def arm_world(procs, tmp_path):
    iface = load_world(get_task("so101_pick")).model_interface()
    cfg = ModelConfig(**{**asdict(TINY), **iface, "cameras": [["front", 32, 32]], "task": "so101_pick"})
    probe = ProbeConfig(image_size=32, channels=(4, 4, 4, 4), hidden=8, task="so101_pick", success_threshold=0.05)
    tiny_checkpoint(tmp_path / "arm", cfg, probe)
    args = ["--ros-args", "-r", f"__ns:={ARM_NS}", "-p", "clock:=lockstep", "-p", f"checkpoint:={tmp_path / 'arm'}"]
    proc = procs.python("hiwm.nodes.world_model", *args, "-p", "seed:=2", "-p", "task:=so101_pick")
    node = create_node("world_model_arm_client")
    client = Client(node, ARM_NS, "so101_pick")
    assert client.reset_client.wait_for_service(60.0), procs.output(proc)
    node.spin_until(lambda: client.command.matched_count() > 0, 10.0)
    yield proc, client, tmp_path / "arm"
    node.destroy()
    assert proc.poll() is None, "the world-model node died:\n" + procs.output(proc)


def test_an_arm_world_model_serves_the_arm_tasks_contract(arm_world, procs):
    proc, client, ckpt = arm_world
    task = get_task("so101_pick")
    assert image_topic("so101_pick") == "camera/front/color/image_raw"
    client.clear()
    state = [0.1, -0.2, 0.3, 0.0, 0.2, 0.5, 0.2, 0.0, 0.02, 1.0, 0.0, 0.0, 0.0]
    response = client.reset(use_state=True, state=np.array(state))
    assert response.success, response.message
    assert client.wait_counts(1), client.counts()
    assert list(client.states[-1].name) == list(task.observations.proprio)
    np.testing.assert_allclose(client.states[-1].position, state[:6], atol=1e-6)  # the reset's joints
    assert list(client.task_states[-1].name) == list(task.observations.state)
    assert image_to_numpy(client.images[-1], expect=(32, 32)).dtype == np.uint8
    plan = np.random.default_rng(1).uniform(-0.5, 0.5, size=(3, 6))
    client.send(plan.reshape(-1), horizon=3, action_dim=6)
    assert client.wait_counts(4), client.counts()
    assert [h.step for h in client.handles] == [0, 1, 2, 3]
    np.testing.assert_allclose(client.handles[2].action, plan[1], rtol=1e-6)
    frames = [image_to_numpy(m) for m in client.images]
    answer = client.restore(client.handles[1].snapshot_id)
    assert answer.success and answer.step == 1, answer.message
    client.send(plan[1:].reshape(-1), horizon=2, action_dim=6)
    assert client.wait_counts(7), client.counts()
    assert np.array_equal(image_to_numpy(client.images[-1]), frames[3])  # the same steps again, bit for bit
    client.clear()
    client.send([100.0, 100.0])  # a Push-T-sized command: refused
    assert not client.node.spin_until(lambda: max(client.counts()) > 0, 0.7)
    bad = client.reset(use_state=True, state=np.array([0.0] * 5))
    assert not bad.success and "13" in bad.message
    assert client.reset(seed=5).success
    assert "action_dim must be 6" in procs.output(proc)
    # a node told to serve another task than its checkpoint's refuses to start, saying why
    other = procs.python("hiwm.nodes.world_model", "--ros-args", "-p", f"checkpoint:={ckpt}", "-p", "task:=pusht")
    assert other.wait(60) != 0
    assert "of task 'so101_pick', not 'pusht'" in procs.output(other)
