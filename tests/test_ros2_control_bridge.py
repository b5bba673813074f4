"""ros2_control bridge: the core (IK round trips, joint/workspace/velocity limits, stale detection), and the
node in its own process over DDS against a peer that publishes /joint_states and decodes what the bridge
sends with rosbags' own ROS 2 typestore, field by field as joint_trajectory_controller reads it."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from conftest import ROOT
from rosbags.typesys import Stores, get_typestore

from hiwm.comm import KEEP_ALL, create_node, new_message
from hiwm.comm.params import build_dataclass, dataclass_parameters, load_parameter_file
from hiwm.nodes.ros2_control_bridge import Ros2ControlBridgeConfig
from hiwm.robot.kinematics import chain_from_dicts
from hiwm.robot.ros2_control import BadCommand, Ros2ControlBridge

ROS = get_typestore(Stores.ROS2_HUMBLE)
JOINTS = ["joint1", "joint2"]


def default_bridge(**overrides) -> Ros2ControlBridge:
    return Ros2ControlBridgeConfig(**overrides).bridge()


def test_cartesian_ik_round_trip_2d_and_3d():
    bridge = default_bridge()
    assert bridge.on_joint_state(["other", "joint2", "joint1"], [9.0, 1.2, 0.3]) is None  # by name, any order
    np.testing.assert_allclose(bridge.current, [0.3, 1.2])
    actions = np.array([[0, 0], [512, 512], [256, 100], [40, 470]], float)
    plan = bridge.plan(4, 2, 0.5, actions.reshape(-1), now=0.0)
    for action, q in zip(actions, plan.positions, strict=True):
        np.testing.assert_allclose(bridge.chain.position(q)[:2], bridge.workspace_point(action), atol=1e-4)
    np.testing.assert_allclose(bridge.workspace_point(np.array([0.0, 512.0])), [0.15, 0.25])
    for action, q in zip(actions, plan.positions, strict=True):  # robot/state: the arm back in the action box
        bridge.on_joint_state(["joint1", "joint2"], q)
        np.testing.assert_allclose(bridge.action_position(), action, atol=0.5)
    rng = np.random.default_rng(1)
    for _ in range(60):  # any seed inside the joint limits, any action in the box: restarts find it
        action = rng.uniform(0, 512, 2)
        q, residual = bridge.solve(bridge.workspace_point(action), rng.uniform(-2.5, 2.5, 2))
        assert residual < 1e-3 and np.all(np.abs(q) <= 2.9)

    chain = chain_from_dicts(
        [
            {"name": "yaw", "axis": [0, 0, 1]},
            {"name": "pitch", "origin_xyz": [0, 0, 0.1], "axis": [0, 1, 0]},
            {"name": "elbow", "origin_xyz": [0.3, 0, 0], "axis": [0, 1, 0]},
        ],
        tip_xyz=[0.25, 0, 0],
    )
    rng = np.random.default_rng(0)
    for _ in range(5):
        q_true = rng.uniform([-1.0, -0.8, 0.3], [1.0, 0.2, 1.5])
        target = chain.position(q_true)
        q, residual = chain.ik(target, np.array([0.1, -0.3, 0.8]))
        assert residual < 1e-5
        np.testing.assert_allclose(chain.position(q), target, atol=1e-5)


def test_joint_workspace_and_velocity_limits():
    bridge = default_bridge(
        action_space="joint", joint_lower=[-1.0, -1.0], joint_upper=[1.0, 1.0], max_velocity=[0.5, 2.0]
    )
    bridge.on_joint_state(JOINTS, [0.0, 0.0])
    plan = bridge.plan(2, 2, 0.1, [2.0, 0.1, 0.5, -3.0], now=0.0)
    np.testing.assert_allclose(plan.positions, [[1.0, 0.1], [0.5, -1.0]])  # clamped to the joint limits
    assert any(w.startswith("joint limit") for w in plan.warnings)
    steps = np.diff(np.vstack([[0.0, 0.0], plan.positions]), axis=0)
    durations = np.diff(np.concatenate([[0.0], plan.times]))
    assert np.all(durations > 0) and np.all(np.abs(steps) / durations <= np.array([0.5, 2.0]) + 1e-9)
    np.testing.assert_allclose(plan.times, [2.0, 3.0])  # 1.0 rad at 0.5 rad/s, then 0.5 rad at 0.5 rad/s
    assert any("velocity limit" in w and "stretched" in w for w in plan.warnings)
    bridge.on_joint_state(JOINTS, [0.5, -1.0])  # plans start from the measured position
    slow = bridge.plan(1, 2, 0.5, [0.55, -1.0], now=0.0)
    assert slow.warnings == [] and slow.times.tolist() == [0.5]

    cart = default_bridge()
    cart.on_joint_state(JOINTS, [0.2, 0.8])
    plan = cart.plan(1, 2, 0.1, [-100.0, 900.0], now=0.0)
    assert any(w.startswith("workspace limit") for w in plan.warnings)
    np.testing.assert_allclose(cart.chain.position(plan.positions[0])[:2], [0.15, 0.25], atol=1e-4)
    far = default_bridge(workspace_low=[0.15, -0.25], workspace_high=[0.9, 0.25])  # beyond the 0.55 m reach
    far.on_joint_state(JOINTS, [0.2, 0.8])
    plan = far.plan(1, 2, 0.1, [512.0, 256.0], now=0.0)
    assert any("unreachable" in w for w in plan.warnings)
    assert np.linalg.norm(far.chain.position(plan.positions[0])) == pytest.approx(0.55, abs=1e-3)


def test_bad_commands_are_refused_and_stale_commands_hold_once():
    bridge = default_bridge()
    with pytest.raises(BadCommand, match="joint_states"):
        bridge.plan(1, 2, 0.1, [1.0, 2.0], now=0.0)
    assert "lacks" in bridge.on_joint_state(["joint1"], [0.0])
    bridge.on_joint_state(JOINTS, [0.2, 0.8])
    for args, match in [
        ((1, 2, 0.1, [math.nan, 1.0]), "finite"),
        ((1, 3, 0.1, [1.0, 2.0, 3.0]), "action_dim"),
        ((2, 2, 0.1, [1.0, 2.0]), "expected"),
        ((0, 2, 0.1, []), "horizon"),
        ((1, 2, 0.0, [1.0, 2.0]), "dt"),
    ]:
        with pytest.raises(BadCommand, match=match):
            bridge.plan(*args, now=0.0)
    assert not bridge.stale(100.0)  # nothing commanded yet: nothing to stop
    bridge.plan(1, 2, 0.1, [256.0, 256.0], now=10.0)
    assert not bridge.stale(10.9)
    assert bridge.stale(11.1) and not bridge.stale(11.2)  # one hold per silence
    bridge.plan(1, 2, 0.1, [256.0, 256.0], now=12.0)
    assert bridge.stale(13.5)
    with pytest.raises(ValueError, match="one value per joint"):
        default_bridge(max_velocity=[1.0])
    with pytest.raises(ValueError, match="controller"):
        Ros2ControlBridgeConfig(controller="effort")


def test_shipped_3d_arm_config_holds_the_tool_height(monkeypatch):
    monkeypatch.chdir(ROOT)  # the parameter file names its chain_file relative to the repository
    given = load_parameter_file(ROOT / "config/ros2_control/bridge_arm3.yaml", "/ros2_control_bridge")
    values = dataclass_parameters(Ros2ControlBridgeConfig) | {k: v.value for k, v in given.items()}
    cfg = build_dataclass(Ros2ControlBridgeConfig, values)
    bridge = cfg.bridge()
    assert bridge.chain.names == ["base_yaw", "shoulder_pitch", "elbow_pitch"]
    bridge.on_joint_state(cfg.joint_names, [0.0, -0.3, 0.9])
    rng = np.random.default_rng(2)
    actions = rng.uniform(0, 512, (8, 2))
    plan = bridge.plan(8, 2, 0.1, actions.reshape(-1), now=0.0)
    assert not any(w.startswith("workspace") for w in plan.warnings)
    for q, action in zip(plan.positions, actions, strict=True):
        tip = bridge.chain.position(q)
        np.testing.assert_allclose(tip[:2], bridge.workspace_point(action)[:2], atol=1e-4)
        assert tip[2] == pytest.approx(0.05, abs=1e-4)  # fixed_axes z held at fixed_values
        assert np.all(q >= bridge.limits.lower) and np.all(q <= bridge.limits.upper)
    with pytest.raises(ValueError, match="fixed"):
        Ros2ControlBridgeConfig(fixed_axes=["x"], fixed_values=[0.1]).bridge()


def test_bad_configuration_exits_with_code_2(procs):
    proc = procs.python("hiwm.nodes.ros2_control_bridge", "--ros-args", "-p", "controller:=effort")
    assert proc.wait(30) == 2
    assert "controller must be one of" in procs.output(proc)


class Peer:
    """The lab side in the test process: a joint_state_broadcaster stand-in publishing /joint_states,
    a policy sending chunks, and the controller's subscription (kept as raw CDR for rosbags)."""

    def __init__(self, msg_type: str, topic: str, positions: list[float]) -> None:
        self.node = create_node("ros2_control_peer")
        self.current = np.asarray(positions, float)
        self.raw: list[bytes] = []
        self.states = self.node.create_publisher("sensor_msgs/msg/JointState", "/joint_states")
        self.command = self.node.create_publisher("hiwm_msgs/msg/ActionChunk", "/arm/robot/command", KEEP_ALL)
        self.node.create_subscription(msg_type, topic, self.raw.append, KEEP_ALL, raw=True)
        self.node.create_timer(0.02, self.publish_state)

    def publish_state(self) -> None:
        self.states.publish(
            new_message("sensor_msgs/msg/JointState", header=self.node.header(), name=["gripper", *JOINTS],
                        position=np.array([0.01, *self.current]))
        )  # fmt: skip

    def send(self, rows, dt: float = 0.2) -> None:
        rows = np.asarray(rows, dtype=np.float32).reshape(-1, 2)
        self.command.publish(
            new_message("hiwm_msgs/msg/ActionChunk", header=self.node.header(), source=0, source_id="test",
                        horizon=rows.shape[0], action_dim=2, dt=dt, data=rows.reshape(-1))
        )  # fmt: skip

    def connect(self, proc, procs) -> None:
        assert self.node.spin_until(lambda: self.command.matched_count() > 0, 15.0), procs.output(proc)
        self.node.spin_until(lambda: False, 0.5)  # let the bridge hear /joint_states

    def wait(self, n: int, timeout: float = 10.0) -> bool:
        return self.node.spin_until(lambda: len(self.raw) >= n, timeout)


def start_bridge(procs, *params: str):
    args = ["--ros-args", "-r", "__ns:=/arm", "-p", "stale_after_s:=0.6", *[x for p in params for x in ("-p", p)]]
    return procs.python("hiwm.nodes.ros2_control_bridge", *args)


def seconds(duration) -> float:
    return duration.sec + duration.nanosec * 1e-9


def test_joint_trajectories_as_the_controller_expects_and_a_hold_when_commands_stop(procs):
    proc = start_bridge(procs)
    peer = Peer("trajectory_msgs/msg/JointTrajectory", "/joint_trajectory_controller/joint_trajectory", [0.2, 0.8])
    try:
        peer.connect(proc, procs)
        peer.send([math.nan, 1.0])  # refused: nothing goes to the controller
        rows = [[256.0, 256.0], [300.0, 260.0], [340.0, 270.0]]
        peer.send(rows)
        assert peer.wait(1), procs.output(proc)
        traj = ROS.deserialize_cdr(peer.raw[0], "trajectory_msgs/msg/JointTrajectory")
        jazzy = get_typestore(Stores.ROS2_JAZZY).deserialize_cdr(peer.raw[0], "trajectory_msgs/msg/JointTrajectory")
        assert jazzy.joint_names == traj.joint_names and len(jazzy.points) == len(traj.points)  # same on Jazzy
        assert traj.joint_names == JOINTS
        assert (traj.header.stamp.sec, traj.header.stamp.nanosec) == (0, 0)  # zero: start on receipt
        assert len(traj.points) == 3
        times = [seconds(p.time_from_start) for p in traj.points]
        assert times[0] > 0 and all(b > a for a, b in itertools.pairwise(times))
        assert all(0 <= p.time_from_start.nanosec < 1_000_000_000 for p in traj.points)
        bridge = Ros2ControlBridgeConfig().bridge()
        for point, action in zip(traj.points, rows, strict=True):
            assert len(point.positions) == len(JOINTS) and np.all(np.isfinite(point.positions))
            assert len(point.velocities) in (0, len(JOINTS)) and len(point.accelerations) in (0, len(JOINTS))
            assert len(point.effort) in (0, len(JOINTS))
            reached = bridge.chain.position(point.positions)[:2]
            np.testing.assert_allclose(reached, bridge.workspace_point(np.array(action)), atol=1e-3)
        # Commands stop: after stale_after_s the bridge holds the measured position.
        peer.current = np.array([0.25, 0.7])
        assert peer.wait(2, 5.0), procs.output(proc)
        hold = ROS.deserialize_cdr(peer.raw[1], "trajectory_msgs/msg/JointTrajectory")
        assert hold.joint_names == JOINTS and len(hold.points) == 1
        np.testing.assert_allclose(hold.points[0].positions, peer.current)
        assert seconds(hold.points[0].time_from_start) == pytest.approx(0.1)
        assert not peer.wait(3, 1.0)  # one hold, not a stream
        peer.send([[256.0, 256.0]])  # commands resume after a hold
        assert peer.wait(3), procs.output(proc)
        log = procs.output(proc)
        assert "finite" in log and "holding position" in log
        assert proc.poll() is None
    finally:
        peer.node.destroy()


def test_forward_command_controller_gets_rows_then_a_hold(procs):
    proc = start_bridge(procs, "controller:=forward_command", "action_space:=joint", "max_velocity:=[1.0, 1.0]")
    peer = Peer("std_msgs/msg/Float64MultiArray", "/forward_position_controller/commands", [0.0, 0.0])
    try:
        peer.connect(proc, procs)
        peer.send([[0.1, -0.1], [0.2, -0.2], [0.3, 5.0]], dt=0.1)  # 5.0 rad: beyond the joint limit
        assert peer.wait(3), procs.output(proc)
        rows = [ROS.deserialize_cdr(r, "std_msgs/msg/Float64MultiArray").data for r in peer.raw[:3]]
        np.testing.assert_allclose(rows, [[0.1, -0.1], [0.2, -0.2], [0.3, 2.9]])
        assert peer.wait(4, 8.0), procs.output(proc)  # then the hold, once commands stop
        np.testing.assert_allclose(ROS.deserialize_cdr(peer.raw[3], "std_msgs/msg/Float64MultiArray").data, [0.0, 0.0])
        assert "joint limit" in procs.output(proc) and "velocity limit" in procs.output(proc)
    finally:
        peer.node.destroy()
