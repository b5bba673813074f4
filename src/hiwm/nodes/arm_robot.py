"""A task's joint-position world (MuJoCo) behind the topics of a lab arm under ros2_control with a RealSense.

ros2 run hiwm arm_robot --ros-args -p task:=so101_pick [-p clock:=lockstep]

Topics (the controller topics absolute, as ros2_control serves them and ros2_control_bridge expects;
the rest relative, so namespaces and remaps apply):
  out ``/joint_states``   sensor_msgs/JointState: the task's joint names, positions (rad) and velocities
  in  ``/joint_trajectory_controller/joint_trajectory``  trajectory_msgs/JointTrajectory (joint names in
                          any order; positions at increasing time_from_start; starts on receipt)
  in  ``/forward_position_controller/commands``          std_msgs/Float64MultiArray, one target per joint
  out ``<camera topic>``  sensor_msgs/Image rgb8 for each task camera, on realsense-ros names
                          (``camera/<name>/color/image_raw``), and its ``camera_info`` beside it
  out ``task/state``      sensor_msgs/JointState: the privileged world state (what a tracker gives in a
                          lab; the scripted expert reads it, ``robot/reset`` takes it)
  out ``task/status``     hiwm_msgs/TaskStatus, world "real"; ``coverage`` carries the task's success
                          metric (e.g. the cube's lift in metres) and ``max_coverage`` the episode's best
Services: ``robot/reset`` hiwm_msgs/Reset (seed >= 0; or use_state with a ``task/state`` vector, the arm
and objects placed there at rest, or the world's full ``get_state`` vector, restored exactly; seed < 0
continues the random stream): a new episode_id, its first observation published.

Clocks: ``lockstep`` runs one control step per forward command or trajectory point and publishes each
step at once; ``realtime`` steps at ``rate_hz`` (the task's control rate by default) toward the current
target. All messages of one step share a header stamp, the images last. QoS ``auto``: reliable keep-all
in lockstep (no step lost; a slow reader slows the arm), reliable keep-last 10 in real time. Bad commands
(NaN, out of the joint limits, wrong length, unknown joint names) are refused whole with a throttled
warning; the node keeps running.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from hiwm.camera.realsense import Intrinsics, camera_info
from hiwm.comm import Node, new_message
from hiwm.comm.images import numpy_to_image
from hiwm.comm.qos import KEEP_ALL, QoSProfile, profile
from hiwm.comm.runner import run_node
from hiwm.robot.arm import CLOCKS, ArmRobot, BadCommand
from hiwm.robot.reset import serve_reset
from hiwm.robot.sim import WorldThread
from hiwm.tasks import DEFAULT_JOINT_TASK, Task, get_task, make_joint_env
from hiwm.tasks.joint_env import JointObservation


@dataclass
class ArmRobotConfig:
    task: str = DEFAULT_JOINT_TASK
    clock: str = "realtime"  # or "lockstep"
    rate_hz: float = 0.0  # real-time control rate; 0: the task's
    seed: int = -1  # first episode's seed; < 0: random
    joint_states_topic: str = "/joint_states"
    trajectory_topic: str = "/joint_trajectory_controller/joint_trajectory"
    forward_topic: str = "/forward_position_controller/commands"
    qos: str = "auto"  # outputs; "auto": keep_all in lockstep, default in real time

    def __post_init__(self) -> None:
        get_task(self.task)
        if self.clock not in CLOCKS:
            raise ValueError(f"clock must be one of {CLOCKS}, got {self.clock!r}")
        if not (math.isfinite(self.rate_hz) and self.rate_hz >= 0):
            raise ValueError(f"rate_hz must be >= 0 (0: the task's rate), got {self.rate_hz}")

    def output_qos(self) -> QoSProfile:
        if self.qos == "auto":
            return KEEP_ALL if self.clock == "lockstep" else profile("default")
        return profile(self.qos)


def info_topic(image_topic: str) -> str:
    """The camera_info topic beside an image topic (``.../image_raw`` -> ``.../camera_info``)."""
    parent = image_topic.rsplit("/", 1)[0] if "/" in image_topic else ""
    return f"{parent}/camera_info" if parent else "camera_info"


def intrinsics(height: int, width: int, fovy_deg: float) -> Intrinsics:
    """A distortion-free pinhole with square pixels and the given vertical field of view."""
    f = 0.5 * height / math.tan(math.radians(fovy_deg) / 2)
    return Intrinsics(width, height, f, f, width / 2.0, height / 2.0, "none", (0.0,) * 5)


class ArmRobotNode:
    """Publishes an :class:`ArmRobot`'s observations and serves its controller topics and reset service."""

    def __init__(self, node: Node, cfg: ArmRobotConfig) -> None:
        self.node, self.cfg = node, cfg
        self.task: Task = get_task(cfg.task)
        # Every use of the world runs on one thread of its own (MuJoCo's OpenGL context is bound to it).
        self.serial = WorldThread("arm_world")
        self.robot = self.serial(self.make_robot)
        fovy = self.robot.env.camera_fovy()
        self.cameras = [(c, intrinsics(c.height, c.width, fovy[c.name])) for c in self.task.cameras]
        qos = cfg.output_qos()
        self.joint_pub = node.create_publisher("sensor_msgs/msg/JointState", cfg.joint_states_topic, qos)
        self.state_pub = node.create_publisher("sensor_msgs/msg/JointState", "task/state", qos)
        self.status_pub = node.create_publisher("hiwm_msgs/msg/TaskStatus", "task/status", qos)
        self.image_pubs = {
            c.name: node.create_publisher("sensor_msgs/msg/Image", c.topic, qos) for c, _ in self.cameras
        }
        self.info_pubs = {
            c.name: node.create_publisher("sensor_msgs/msg/CameraInfo", info_topic(c.topic), qos)
            for c, _ in self.cameras
        }
        node.create_subscription(
            "trajectory_msgs/msg/JointTrajectory",
            cfg.trajectory_topic,
            lambda msg: self.serial(self.on_trajectory, msg),
            KEEP_ALL,
        )
        node.create_subscription(
            "std_msgs/msg/Float64MultiArray", cfg.forward_topic, lambda msg: self.serial(self.on_forward, msg), KEEP_ALL
        )
        node.create_service("hiwm_msgs/srv/Reset", "robot/reset", lambda req: self.serial(self.on_reset, req))
        if cfg.clock == "realtime":
            node.create_timer(1.0 / (cfg.rate_hz or self.task.fps), lambda: self.serial(self.on_tick))
        node.logger.info(
            f"{cfg.task} arm ({cfg.clock}): joints {list(self.task.action.names)}"
            f" on {node.resolve(cfg.joint_states_topic)}, cameras {[node.resolve(c.topic) for c, _ in self.cameras]}"
        )
        self.serial(self.publish, self.robot.observation)

    def make_robot(self) -> ArmRobot:
        seed = self.cfg.seed if self.cfg.seed >= 0 else None
        env = make_joint_env(self.cfg.task)
        return ArmRobot(env, self.task.action.names, self.task.success.metric, self.cfg.clock, seed)

    # -- output ---------------------------------------------------------------------------------
    def publish(self, obs: JointObservation) -> None:
        stamp = self.node.stamp()

        def head(frame_id: str = "") -> Any:
            return new_message("std_msgs/msg/Header", stamp=stamp, frame_id=frame_id)

        def joints(names: tuple[str, ...], position: np.ndarray, velocity: np.ndarray) -> Any:
            f64 = np.float64
            return new_message(
                "sensor_msgs/msg/JointState",
                header=head(),
                name=list(names),
                position=np.asarray(position, f64),
                velocity=np.asarray(velocity, f64),
                effort=np.zeros(0),
            )

        self.joint_pub.publish(joints(self.task.action.names, obs.joints, obs.velocities))
        self.state_pub.publish(joints(self.task.observations.state, obs.state, np.zeros(0)))
        self.status_pub.publish(
            new_message(
                "hiwm_msgs/msg/TaskStatus",
                header=head(),
                episode_id=self.robot.episode_id,
                step=int(obs.step),
                coverage=self.robot.metric(obs),
                max_coverage=self.robot.best_metric,
                success=bool(obs.success),
                done=bool(obs.done),
                world="real",
            )
        )
        for cam, intr in self.cameras:  # images last: a reader that has a step's image has all of it
            frame = head(f"{cam.name}_color_optical_frame")
            self.info_pubs[cam.name].publish(camera_info(intr, frame))
            if cam.name in obs.images:
                self.image_pubs[cam.name].publish(numpy_to_image(obs.images[cam.name], frame))

    def publish_all(self, observations: list[JointObservation]) -> None:
        for obs in observations:
            self.publish(obs)

    def close(self) -> None:
        self.serial(self.robot.env.close)  # the renderer's OpenGL context, on its own thread
        self.serial.close()

    # -- input ----------------------------------------------------------------------------------
    def refuse(self, topic: str, exc: BadCommand) -> None:
        # Throttled per topic and kind, so one flood cannot hide a different problem.
        self.node.bad_input.warning(f"{topic}.{exc.kind}", f"refused command on {self.node.resolve(topic)}: {exc}")

    def on_trajectory(self, msg: Any) -> None:
        try:
            times = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points]
            positions = [p.positions for p in msg.points]
            out = self.robot.command_trajectory(list(msg.joint_names), times, positions, time.monotonic())
        except BadCommand as exc:
            self.refuse(self.cfg.trajectory_topic, exc)
            return
        self.publish_all(out)

    def on_forward(self, msg: Any) -> None:
        try:
            out = self.robot.command_positions(msg.data)
        except BadCommand as exc:
            self.refuse(self.cfg.forward_topic, exc)
            return
        self.publish_all(out)

    def on_tick(self) -> None:
        obs = self.robot.tick(time.monotonic())
        if obs is not None:
            self.publish(obs)

    def on_reset(self, request: Any) -> Any:
        return serve_reset(self.robot, request, self.publish, self.node.bad_input)


def wire(node: Node) -> ArmRobotNode:
    return ArmRobotNode(node, node.load_config(ArmRobotConfig))


def main(argv: list[str] | None = None) -> int:
    return run_node("arm_robot", wire, argv)


if __name__ == "__main__":
    raise SystemExit(main())
