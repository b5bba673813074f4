"""ros2_control bridge: hiwm action chunks to a joint_trajectory_controller or a forward command controller.

The ``task`` parameter (a registered task) is the action space the bridge serves: its action_dim must be
the bridge's (the Cartesian axes, or the joints), ``action_low`` / ``action_high`` default to its limits
(the Cartesian action box), and ``robot/state`` carries its proprio names (a task whose proprio is its
action space: the bridge reports the arm in that space).

Topics:
  in  ``robot/command``   hiwm_msgs/ActionChunk: Cartesian (x, y[, z] in the action box) or joint positions
  in  ``/joint_states``   sensor_msgs/JointState (``joint_states_topic``), best-effort so any publisher matches
  out ``robot/state``     sensor_msgs/JointState: the arm in the action space (for Cartesian actions the tool
                          mapped back into the action box), named as the task's proprio: what a policy reads
  out ``output_topic``    trajectory_msgs/JointTrajectory (``controller: joint_trajectory``, default
                          ``/joint_trajectory_controller/joint_trajectory``) or std_msgs/Float64MultiArray
                          (``controller: forward_command``, default ``/forward_position_controller/commands``,
                          one row per due time, played back at ``rate_hz``)
Joint, workspace and velocity limits are enforced with throttled warnings; refused chunks send nothing.
When no command arrives for ``stale_after_s`` the bridge holds: it sends the measured joint positions.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from hiwm.comm import KEEP_ALL, SENSOR_DATA, Node, new_message
from hiwm.comm.runner import run_node
from hiwm.robot.kinematics import Chain, chain_from_dicts, planar_chain
from hiwm.robot.ros2_control import (
    ACTION_SPACES,
    BadCommand,
    BridgeLimits,
    Ros2ControlBridge,
    forward_command,
    joint_trajectory,
)
from hiwm.tasks import DEFAULT_TASK, Task, get_task
from hiwm.tasks.contract import ROBOT_COMMAND, ROBOT_STATE

CONTROLLERS = {
    "joint_trajectory": ("trajectory_msgs/msg/JointTrajectory", "/joint_trajectory_controller/joint_trajectory"),
    "forward_command": ("std_msgs/msg/Float64MultiArray", "/forward_position_controller/commands"),
}


@dataclass
class Ros2ControlBridgeConfig:
    task: str = DEFAULT_TASK  # a registered task: the action space served, the names on robot/state
    joint_names: list[str] = field(default_factory=lambda: ["joint1", "joint2"])
    controller: str = "joint_trajectory"  # or forward_command
    output_topic: str = ""  # empty: the controller's default topic
    command_topic: str = ROBOT_COMMAND
    joint_states_topic: str = "/joint_states"
    action_space: str = "cartesian"  # or joint
    chain_file: str = ""  # YAML {chain: [{name, origin_xyz, origin_rpy, axis, type}], tip_xyz}; empty: planar
    link_lengths: list[float] = field(default_factory=lambda: [0.3, 0.25])  # the default planar chain
    axes: list[str] = field(default_factory=lambda: ["x", "y"])
    fixed_axes: list[str] = field(default_factory=list)  # coordinates IK holds constant, e.g. ["z"]
    fixed_values: list[float] = field(default_factory=list)  # metres, one per fixed axis
    action_low: list[float] = field(default_factory=list)  # the Cartesian action box; empty: the task's limits
    action_high: list[float] = field(default_factory=list)
    workspace_low: list[float] = field(default_factory=lambda: [0.15, -0.25])  # metres, in the chain's base frame
    workspace_high: list[float] = field(default_factory=lambda: [0.45, 0.25])
    joint_lower: list[float] = field(default_factory=lambda: [-2.9, -2.9])
    joint_upper: list[float] = field(default_factory=lambda: [2.9, 2.9])
    max_velocity: list[float] = field(default_factory=lambda: [1.5, 1.5])  # rad/s (or m/s for prismatic)
    stale_after_s: float = 1.0
    hold_time_s: float = 0.1  # time_from_start of the hold point
    rate_hz: float = 50.0  # watchdog and forward-command playback
    frame_id: str = ""

    def __post_init__(self) -> None:
        task = get_task(self.task)
        if task.observations.proprio != task.action.names:
            raise ValueError(
                f"task {task.name!r}: its proprio {list(task.observations.proprio)} is not its action space"
                f" {list(task.action.names)}; the bridge reports the arm in the action space"
            )
        if self.controller not in CONTROLLERS:
            raise ValueError(f"controller must be one of {sorted(CONTROLLERS)}, got {self.controller!r}")
        if self.action_space not in ACTION_SPACES:
            raise ValueError(f"action_space must be one of {ACTION_SPACES}, got {self.action_space!r}")
        cartesian = self.action_space == "cartesian"
        dims = len(self.axes) if cartesian else len(self.joint_names)
        if dims != task.action_dim:
            what = f"axes {list(self.axes)}" if cartesian else f"joints {list(self.joint_names)}"
            raise ValueError(
                f"{self.action_space} actions on {what} have {dims} dimensions, but task {task.name!r} acts in"
                f" {task.action_dim} ({', '.join(task.action.names)}): set task, or the bridge's configuration"
            )
        if len(self.fixed_axes) != len(self.fixed_values):
            raise ValueError(f"fixed_axes {self.fixed_axes} and fixed_values {self.fixed_values} differ in length")
        if not (self.stale_after_s > 0 and self.hold_time_s > 0 and self.rate_hz > 0):
            raise ValueError("stale_after_s, hold_time_s and rate_hz must be > 0")

    def chain(self) -> Chain:
        if not self.chain_file:
            return planar_chain([float(x) for x in self.link_lengths], list(self.joint_names))
        try:
            doc = yaml.safe_load(Path(self.chain_file).read_text())
            return chain_from_dicts(doc["chain"], doc.get("tip_xyz", (0.0, 0.0, 0.0)))
        except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
            raise ValueError(f"chain_file {self.chain_file!r}: {type(exc).__name__}: {exc}") from exc

    def bridge(self) -> Ros2ControlBridge:
        def arr(values: list) -> np.ndarray:
            return np.asarray([float(v) for v in values])

        action = get_task(self.task).action
        limits = BridgeLimits(
            arr(self.joint_lower),
            arr(self.joint_upper),
            arr(self.max_velocity),
            arr(self.workspace_low),
            arr(self.workspace_high),
        )
        chain = self.chain() if self.action_space == "cartesian" else None
        return Ros2ControlBridge(
            list(self.joint_names),
            limits,
            self.action_space,
            chain,
            axes=list(self.axes),
            fixed=dict(zip(self.fixed_axes, (float(v) for v in self.fixed_values), strict=True)),
            action_low=arr(self.action_low or action.low),
            action_high=arr(self.action_high or action.high),
            stale_after_s=self.stale_after_s,
        )


class Ros2ControlBridgeNode:
    def __init__(self, node: Node, cfg: Ros2ControlBridgeConfig) -> None:
        self.node, self.cfg = node, cfg
        self.task: Task = get_task(cfg.task)
        self.bridge = cfg.bridge()
        kind, default_topic = CONTROLLERS[cfg.controller]
        self.out = node.create_publisher(kind, cfg.output_topic or default_topic)
        self.queue: deque[tuple[float, np.ndarray]] = deque()  # forward_command playback
        self.state_pub = node.create_publisher("sensor_msgs/msg/JointState", ROBOT_STATE, KEEP_ALL)
        node.create_subscription("sensor_msgs/msg/JointState", cfg.joint_states_topic, self.on_joint_state, SENSOR_DATA)
        node.create_subscription("hiwm_msgs/msg/ActionChunk", cfg.command_topic, self.on_command, KEEP_ALL)
        node.create_timer(1.0 / cfg.rate_hz, self.tick)
        node.logger.info(
            f"{cfg.task}: {cfg.action_space} actions -> {cfg.controller} on {self.out.topic};"
            f" joints {self.bridge.joint_names}"
        )

    def on_joint_state(self, msg: object) -> None:
        problem = self.bridge.on_joint_state(list(msg.name), msg.position)
        if problem:
            self.node.bad_input.warning("joint_states", f"{self.cfg.joint_states_topic}: {problem}")
            return
        position = self.bridge.action_position()
        self.state_pub.publish(
            new_message(
                "sensor_msgs/msg/JointState",
                header=msg.header,
                name=list(self.task.observations.proprio),
                position=np.asarray(position, dtype=np.float64),
                velocity=np.zeros(0),
                effort=np.zeros(0),
            )
        )

    def on_command(self, msg: object) -> None:
        now = time.monotonic()
        try:
            plan = self.bridge.plan(int(msg.horizon), int(msg.action_dim), float(msg.dt), msg.data, now)
        except BadCommand as exc:
            self.node.bad_input.warning(f"command.{exc.kind}", f"refused command from {msg.source_id or '?'}: {exc}")
            return
        for warning in plan.warnings:
            self.node.bad_input.warning("command." + warning.split(":")[0], warning)
        if self.cfg.controller == "joint_trajectory":
            self.out.publish(joint_trajectory(self.bridge.joint_names, plan.times, plan.positions, self.header()))
        else:
            # Row i is commanded when row i-1 is due, so each gets its (velocity-limited) duration to be reached.
            starts = now + np.concatenate([[0.0], plan.times[:-1]])
            self.queue = deque(zip(starts, plan.positions, strict=True))

    def header(self) -> object:
        # A zero stamp tells joint_trajectory_controller to start the trajectory on receipt.
        return new_message("std_msgs/msg/Header", frame_id=self.cfg.frame_id)

    def tick(self) -> None:
        now = time.monotonic()
        due = None
        while self.queue and self.queue[0][0] <= now:
            due = self.queue.popleft()[1]
        if due is not None:
            self.out.publish(forward_command(due))
        if self.bridge.stale(now):
            self.queue.clear()
            q = self.bridge.hold_positions()
            self.node.logger.warning(
                f"no command for {self.cfg.stale_after_s:g} s: holding position {np.round(q, 4).tolist()}"
            )
            if self.cfg.controller == "joint_trajectory":
                hold = joint_trajectory(
                    self.bridge.joint_names, np.array([self.cfg.hold_time_s]), q[None], self.header()
                )
                self.out.publish(hold)
            else:
                self.out.publish(forward_command(q))


def wire(node: Node) -> Ros2ControlBridgeNode:
    return Ros2ControlBridgeNode(node, node.load_config(Ros2ControlBridgeConfig))


def main(argv: list[str] | None = None) -> int:
    return run_node("ros2_control_bridge", wire, argv)


if __name__ == "__main__":
    raise SystemExit(main())
