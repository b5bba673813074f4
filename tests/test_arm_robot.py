"""The arm robot: the SO-101 pick world behind a lab arm's ros2_control and RealSense topics.

The core without middleware (commands, clocks, resets), then the node in its own process over DDS in
lockstep and in real time, then the hiwm launch graph driving it through ros2_control_bridge.
"""

from __future__ import annotations

import math
import signal
import sys
import time

import numpy as np
import pytest

from hiwm.comm import create_node, new_message
from hiwm.comm.images import image_to_numpy
from hiwm.comm.qos import KEEP_ALL
from hiwm.robot.arm import ArmRobot, BadCommand
from hiwm.robot.ros2_control import forward_command, joint_trajectory
from hiwm.tasks import get_task, make_joint_env

TASK = get_task("so101_pick")
JOINTS = list(TASK.action.names)
NS = "/arm1"


def robot_core(clock: str = "lockstep") -> ArmRobot:
    return ArmRobot(make_joint_env("so101_pick", render=False), JOINTS, TASK.success.metric, clock, seed=0)


def test_core_commands_clocks_and_resets():
    robot = robot_core()
    start = robot.observation.joints.copy()
    target = start + np.array([0.3, 0.2, -0.2, 0.1, 0.0, 0.2])
    (obs,) = robot.command_positions(target)  # one forward command, one step
    assert obs.step == 1 and np.linalg.norm(obs.joints - target) < np.linalg.norm(start - target)
    order = [5, 0, 4, 1, 3, 2]  # a trajectory may name the joints in any order
    points = [target[order] + 0.05 * k for k in (1, 2, 3)]
    out = robot.command_trajectory([JOINTS[i] for i in order], [0.1, 0.2, 0.3], points, 0.0)
    assert [o.step for o in out] == [2, 3, 4]
    np.testing.assert_allclose(robot.target, target + 0.15)  # mapped back onto the task's order
    bad = [
        (lambda: robot.command_positions([math.nan] * 6), "finite"),
        (lambda: robot.command_positions([0.0] * 5), "length"),
        (lambda: robot.command_positions([3.0, 0, 0, 0, 0, 0]), "limits"),
        (lambda: robot.command_trajectory(["elbow", *JOINTS[1:]], [0.1], [[0.0] * 6], 0.0), "names"),
        (lambda: robot.command_trajectory(JOINTS[:5], [0.1], [[0.0] * 5], 0.0), "names"),
        (lambda: robot.command_trajectory(JOINTS, [0.2, 0.1], [[0.0] * 6] * 2, 0.0), "time"),
        (lambda: robot.command_trajectory(JOINTS, [0.1], [[0.0] * 5], 0.0), "length"),
    ]
    for call, kind in bad:
        with pytest.raises(BadCommand) as err:
            call()
        assert err.value.kind == kind
    assert robot.observation.step == 4  # nothing refused moved the arm

    # Reset by seed is deterministic; by task/state it places the world; by get_state it restores exactly.
    a = robot.reset(seed=7).state.copy()
    saved = robot.env.get_state()
    after = robot.command_positions(robot.target + 0.1)[0].state.copy()
    np.testing.assert_array_equal(robot.reset(seed=7).state, a)
    placed = a.copy()
    placed[0], placed[6] = 0.5, 0.2  # pan the arm, move the cube
    np.testing.assert_allclose(robot.reset(state=placed).state, placed, atol=1e-9)
    robot.reset(state=saved)
    np.testing.assert_array_equal(robot.command_positions(robot.target + 0.1)[0].state, after)
    with pytest.raises(ValueError):
        robot.reset(state=[1.0, 2.0])

    # Real time: a trajectory is sampled at the tick's time, a forward command is held.
    rt = robot_core("realtime")
    origin = rt.target.copy()
    goal = origin + 0.4
    assert rt.command_trajectory(JOINTS, [1.0], [goal], now=10.0) == []
    rt.tick(10.5)
    np.testing.assert_allclose(rt.target, (origin + goal) / 2)
    rt.tick(11.5)
    np.testing.assert_allclose(rt.target, goal)
    assert rt.trajectory is None
    rt.command_positions(origin)
    rt.tick(12.0)
    np.testing.assert_allclose(rt.target, origin)
    rt.command_trajectory(JOINTS, [1.0], [goal], now=20.0)
    rt.command_trajectory(JOINTS, [], [], now=20.25)  # an empty trajectory stops where it is
    rt.tick(21.0)
    np.testing.assert_allclose(rt.target, origin + 0.1)


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


class Client:
    """The test's side of the arm: a lab's controller inputs, and every output per step."""

    def __init__(self, node, ns: str = NS) -> None:
        self.node = node
        self.joints: list = []
        self.images: list = []
        self.infos: list = []
        self.statuses: list = []
        self.task_states: list = []
        sub = node.create_subscription
        sub("sensor_msgs/msg/JointState", "/joint_states", self.joints.append, KEEP_ALL)
        sub("sensor_msgs/msg/Image", f"{ns}/camera/front/color/image_raw", self.images.append, KEEP_ALL)
        sub("sensor_msgs/msg/CameraInfo", f"{ns}/camera/front/color/camera_info", self.infos.append, KEEP_ALL)
        sub("hiwm_msgs/msg/TaskStatus", f"{ns}/task/status", self.statuses.append, KEEP_ALL)
        sub("sensor_msgs/msg/JointState", f"{ns}/task/state", self.task_states.append, KEEP_ALL)
        self.trajectory = node.create_publisher(
            "trajectory_msgs/msg/JointTrajectory", "/joint_trajectory_controller/joint_trajectory", KEEP_ALL
        )
        self.forward = node.create_publisher("std_msgs/msg/Float64MultiArray", "/forward_position_controller/commands")
        self.reset_client = node.create_client("hiwm_msgs/srv/Reset", f"{ns}/robot/reset")

    def counts(self) -> tuple[int, ...]:
        return len(self.joints), len(self.images), len(self.infos), len(self.statuses), len(self.task_states)

    def wait_counts(self, n: int, timeout: float = 20.0) -> bool:
        return self.node.spin_until(lambda: min(self.counts()) >= n, timeout)

    def logs(self) -> tuple[list, ...]:
        return self.joints, self.images, self.infos, self.statuses, self.task_states

    def reset(self, **fields) -> object:
        """Reset; on success, wait for the new episode's first step and keep only that one."""
        response = self.reset_client.call(new_message("hiwm_msgs/srv/Reset_Request", **fields), timeout=20.0)
        if response.success:
            assert self.node.spin_until(
                lambda: any(s.episode_id == response.episode_id for s in self.statuses) and min(self.counts()) >= 1, 20
            )
            first = next(s for s in self.statuses if s.episode_id == response.episode_id).header.stamp
            stamp = first.sec * 10**9 + first.nanosec
            assert self.node.spin_until(lambda: all(stamp_ns(log[-1]) >= stamp for log in self.logs()), 20)
            for log in self.logs():
                log[:] = [m for m in log if stamp_ns(m) >= stamp]
        return response

    def send_positions(self, values) -> None:
        self.forward.publish(forward_command(np.asarray(values, dtype=np.float64)))

    def send_trajectory(self, names, points, dt: float = 0.1) -> None:
        times = dt * np.arange(1, len(points) + 1)
        self.trajectory.publish(
            joint_trajectory(names, times, np.asarray(points, dtype=np.float64), self.node.header())
        )


def start_arm(procs, clock: str):
    proc = procs.python("hiwm.nodes.arm_robot", "--ros-args", "-r", f"__ns:={NS}", "-p", f"clock:={clock}")
    node = create_node("arm_test_client")
    client = Client(node)
    assert client.reset_client.wait_for_service(60.0), procs.output(proc)
    node.spin_until(lambda: client.trajectory.matched_count() > 0 and client.forward.matched_count() > 0, 20.0)
    return proc, client


@pytest.fixture
def lockstep(procs):
    proc, client = start_arm(procs, "lockstep")
    yield proc, client
    client.node.destroy()
    assert proc.poll() is None, "the arm node died:\n" + procs.output(proc)


def test_joint_states_images_and_one_step_per_command(lockstep):
    _, client = lockstep
    response = client.reset(seed=3)
    assert response.success and response.episode_id, response.message
    assert client.wait_counts(1), client.counts()
    js = client.joints[-1]
    assert list(js.name) == JOINTS and len(js.position) == len(js.velocity) == 6
    image = image_to_numpy(client.images[-1], expect=(128, 128))
    assert image.dtype == np.uint8 and image.std() > 0
    info = client.infos[-1]
    assert (info.height, info.width) == (128, 128) and info.k[0] > 0 and info.k[2] == 64.0
    stamps = {stamp_ns(m) for m in (js, client.images[-1], info)}
    assert len(stamps) == 1 and client.statuses[-1].header.stamp == js.header.stamp  # one stamp per step
    status = client.statuses[-1]
    assert (status.episode_id, status.step, status.world, status.done) == (response.episode_id, 0, "real", False)
    assert list(client.task_states[-1].name) == list(TASK.observations.state)

    start = np.asarray(js.position)
    target = start + np.array([0.4, 0.3, -0.3, 0.2, 0.0, 0.3])
    client.send_positions(target)  # a forward command: exactly one step
    assert client.wait_counts(2)
    assert not client.node.spin_until(lambda: min(client.counts()) > 2, 1.0)
    assert client.statuses[-1].step == 1
    order = [3, 1, 5, 0, 2, 4]
    client.send_trajectory([JOINTS[i] for i in order], [target[order]] * 4)  # four points: four steps
    assert client.wait_counts(6), client.counts()
    assert not client.node.spin_until(lambda: min(client.counts()) > 6, 1.0)
    assert [s.step for s in client.statuses] == list(range(6))
    moved = np.asarray(client.joints[-1].position)
    assert np.linalg.norm(moved - target) < 0.25 * np.linalg.norm(start - target)  # the joints went there
    np.testing.assert_allclose(client.task_states[-1].position[:6], moved)


def test_reset_by_seed_is_deterministic_and_by_state_places_the_world(lockstep):
    _, client = lockstep
    runs = []
    for _ in range(2):
        assert client.reset(seed=11).success
        assert client.wait_counts(1)
        start = np.asarray(client.joints[-1].position)
        for k in range(1, 4):
            client.send_positions(start + 0.1 * k)
            assert client.wait_counts(k + 1)
        runs.append(np.array([m.position for m in client.task_states]))
    np.testing.assert_array_equal(runs[0], runs[1])
    state = runs[0][0].copy()
    state[0], state[7] = -0.4, state[7] + 0.03  # pan the arm, move the cube
    assert client.reset(use_state=True, state=state).success
    assert client.wait_counts(1)
    np.testing.assert_allclose(client.task_states[-1].position, state, atol=1e-9)
    bad = client.reset(use_state=True, state=np.array([1.0, 2.0]))
    assert not bad.success and "13" in bad.message


@pytest.mark.probe(
    "NaN, out-of-limit, wrong-length and unknown-joint commands on both controller topics",
    "refused whole with a clear log line, no step taken, the node keeps answering",
)
def test_bad_commands_are_refused_and_the_node_keeps_running(lockstep, procs):
    proc, client = lockstep
    assert client.reset(seed=1).success
    assert client.wait_counts(1)
    home = list(client.joints[-1].position)
    client.send_positions([math.nan, *home[1:]])
    client.send_positions([3.5, *home[1:]])  # shoulder_pan beyond its 1.92 rad limit
    client.send_positions(home[:4])
    client.send_trajectory(["shoulder", *JOINTS[1:]], [home])
    client.send_trajectory(JOINTS, [home[:5]])
    client.send_trajectory(JOINTS, [home, [math.inf] * 6])
    assert not client.node.spin_until(lambda: min(client.counts()) > 1, 2.0)  # nothing ran
    client.send_positions(home)
    assert client.wait_counts(2), "the node stopped answering after bad commands"
    assert client.statuses[-1].step == 1
    log = procs.output(proc)
    for needle in ("finite", "out of joint limits", "expected 6", "unknown joint names", "5 positions for 6"):
        assert needle in log, needle
    assert proc.poll() is None


def test_realtime_clock_streams_and_follows_a_trajectory(procs):
    proc, client = start_arm(procs, "realtime")
    try:
        assert client.wait_counts(3), procs.output(proc)  # steps at the task's rate with no command
        start = np.asarray(client.joints[-1].position)
        target = start + np.array([0.5, 0.0, 0.0, 0.0, 0.0, 0.0])
        client.send_trajectory(JOINTS, [target], dt=0.5)
        assert client.node.spin_until(lambda: abs(client.joints[-1].position[0] - target[0]) < 0.05, 20.0)
        steps = [s.step for s in client.statuses]
        assert steps == list(range(steps[0], steps[0] + len(steps)))
    finally:
        client.node.destroy()
    assert proc.poll() is None, procs.output(proc)


def test_hiwm_graph_drives_the_arm_through_ros2_control_bridge(procs):
    ns = "/lab"
    launcher = procs.start(
        sys.executable, "-m", "hiwm.cli.main", "launch", "hiwm", "world:=real", "robot:=so101", "task:=so101_pick",
        f"namespace:={ns}",
        "clock:=lockstep", "teleop:=false", "record:=false", "initial_phase:=paused",
        "policy:=tests.peers.hold_policy:HoldPolicy", "use_status:=true", "db:=" + str(procs.tmp / "cache.db"),
        name="launch_so101",
    )  # fmt: skip
    node = create_node("arm_graph_test")
    states, images = [], []
    node.create_subscription("sensor_msgs/msg/JointState", f"{ns}/robot/state", states.append, KEEP_ALL)
    node.create_subscription("sensor_msgs/msg/Image", f"{ns}/{TASK.cameras[0].topic}", images.append, KEEP_ALL)
    command = node.create_publisher("hiwm_msgs/msg/ActionChunk", f"{ns}/robot/command", KEEP_ALL)
    try:
        reset = node.create_client("hiwm_msgs/srv/Reset", f"{ns}/robot/reset")
        assert reset.wait_for_service(90.0), procs.output(launcher)
        # the bridge must be listening before the reset's joint states go out (lockstep: sent once)
        assert node.spin_until(lambda: command.matched_count() >= 1, 60.0), procs.output(launcher)  # the bridge
        time.sleep(1.0)
        assert reset.call(new_message("hiwm_msgs/srv/Reset_Request", seed=4), timeout=20.0).success
        assert node.spin_until(lambda: states and images, 30.0), procs.output(launcher)
        first = states[-1]
        assert list(first.name) == JOINTS  # the bridge passes the task's joints through
        start = np.asarray(first.position)
        target = start + np.array([0.3, -0.2, 0.2, 0.1, 0.0, 0.2])
        rows = np.vstack([start + (target - start) * k / 3 for k in (1, 2, 3)]).astype(np.float32)
        sent = len(states)
        command.publish(
            new_message(
                "hiwm_msgs/msg/ActionChunk", header=node.header(), source=1, source_id="test", horizon=3,
                action_dim=6, dt=0.1, data=rows.reshape(-1),
            )
        )  # fmt: skip
        assert node.spin_until(lambda: len(states) >= sent + 3, 30.0), procs.output(launcher)  # three steps back
        node.spin_until(lambda: False, 0.5)
        moved = np.asarray(states[-1].position)
        assert np.linalg.norm(moved - target) < 0.5 * np.linalg.norm(start - target), (start, moved, target)
        assert image_to_numpy(images[-1], expect=(128, 128)).std() > 0
    finally:
        node.destroy()
    launcher.send_signal(signal.SIGINT)
    assert launcher.wait(30) == 0, procs.output(launcher)
