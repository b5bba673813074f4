"""A task's simulated world (its own physics) behind the topics of a real robot with cameras.

ros2 run hiwm sim_robot --ros-args -p task:=so101_pick [-p clock:=lockstep] [-p seed:=3]

Topics (relative, so namespaces and remaps apply; the contract of :mod:`hiwm.tasks.contract`, which
the world-model node publishes too):
  out ``<camera topic>``  sensor_msgs/Image rgb8, one per task camera (``Camera.topic``, realsense-ros's
                          ``camera/<name>/color/image_raw`` unless the task says otherwise), ``image_size`` square
  out ``robot/state``     sensor_msgs/JointState, the task's proprio names: positions and velocities
  out ``task/state``      sensor_msgs/JointState, the task's state names: the true world state
                          (privileged; what a tracker would give in a lab, and what the scripted
                          expert and ``robot/reset`` use)
  out ``task/status``     hiwm_msgs/TaskStatus, world "real"; ``coverage`` carries the task's success metric
  in  ``robot/command``   hiwm_msgs/ActionChunk of the task's action_dim; one row per step
(messages built by :meth:`hiwm.tasks.world.TaskWorld.observation_messages`)
Services: ``robot/reset`` hiwm_msgs/Reset (seed >= 0, or use_state + a ``task/state`` vector; seed < 0
continues the random stream); it answers the new episode_id and publishes the episode's first observation.

Clocks: ``lockstep`` runs one env step per command row and publishes each step at once;
``realtime`` runs a control tick at ``rate_hz`` (next queued row, else hold the last target).
QoS ``auto``: lockstep uses reliable keep-all for every output, so no step's image is ever lost
(a slow reader slows the robot down instead, which is what lockstep means); real time uses
reliable keep-last 10 ("default"), so a slow viewer never stalls the control tick.
All outputs of one step carry the same header stamp. Malformed commands are refused (NaN,
infinite, wrong action_dim or length) or clamped (outside the action space) with a throttled
warning; the node keeps running.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hiwm.comm import Node
from hiwm.comm.qos import KEEP_ALL, QoSProfile, profile
from hiwm.comm.runner import run_node
from hiwm.robot.reset import serve_reset
from hiwm.robot.sim import SimRobot, WorldThread
from hiwm.tasks import DEFAULT_TASK, get_task
from hiwm.tasks.chunks import CLOCKS, BadCommand
from hiwm.tasks.contract import output_topics
from hiwm.tasks.world import load_world


@dataclass
class SimRobotConfig:
    task: str = DEFAULT_TASK  # a registered task (hiwm tasks) with a world
    image_size: int = 0  # camera images, square; 0: the task camera's size
    rate_hz: float = 0.0  # real-time control rate; 0: the task's
    clock: str = "realtime"  # or "lockstep"
    seed: int = -1  # initial episode's seed; < 0: random
    frame_id: str = "camera"
    qos: str = "auto"  # images, states and status; "auto": keep_all in lockstep, default in real time

    def __post_init__(self) -> None:
        get_task(self.task)
        if self.clock not in CLOCKS:
            raise ValueError(f"clock must be one of {CLOCKS}, got {self.clock!r}")
        if not (math.isfinite(self.rate_hz) and self.rate_hz >= 0):
            raise ValueError(f"rate_hz must be >= 0 (0: the task's rate), got {self.rate_hz}")
        if self.image_size != 0 and self.image_size < 8:
            raise ValueError(f"image_size must be >= 8 (or 0: the task camera's), got {self.image_size}")

    def output_qos(self) -> QoSProfile:
        if self.qos == "auto":
            return KEEP_ALL if self.clock == "lockstep" else profile("default")
        return profile(self.qos)


class SimRobotNode:
    """Publishes observations of a :class:`SimRobot` and serves its command topic and reset service."""

    def __init__(self, node: Node, cfg: SimRobotConfig) -> None:
        self.node, self.cfg = node, cfg
        task = get_task(cfg.task)
        self.world = load_world(task)
        # Every use of the world runs on its own thread (a MuJoCo world's OpenGL context is bound to it).
        self.serial = WorldThread(f"{task.name}_world")
        seed = cfg.seed if cfg.seed >= 0 else None
        self.robot: SimRobot = self.serial(SimRobot, self.world, cfg.image_size or None, seed, cfg.clock)
        qos = cfg.output_qos()
        types = self.world.topics()
        self.pubs = {topic: node.create_publisher(types[topic], topic, qos) for topic in output_topics(task)}
        node.create_subscription(
            "hiwm_msgs/msg/ActionChunk", "robot/command", lambda msg: self.serial(self.on_command, msg), KEEP_ALL
        )
        node.create_service("hiwm_msgs/srv/Reset", "robot/reset", lambda req: self.serial(self.on_reset, req))
        if cfg.clock == "realtime":
            node.create_timer(1.0 / (cfg.rate_hz or task.fps), lambda: self.serial(self.on_tick))
        node.logger.info(
            f"{task.name} robot ({cfg.clock}): actions {list(task.action.names)} on {node.resolve('robot/command')},"
            f" cameras {[node.resolve(c.topic) for c in task.cameras]}"
        )

    def publish(self, obs: Any) -> None:
        msgs = self.world.observation_messages(
            obs, self.robot.episode_id, self.node.now_ns(), obs.done, self.robot.best_metric, "real", self.cfg.frame_id
        )
        for topic, msg in msgs.items():
            self.pubs[topic].publish(msg)

    def on_command(self, msg: Any) -> None:
        try:
            result = self.robot.command(int(msg.horizon), int(msg.action_dim), msg.data)
        except BadCommand as exc:
            self.node.bad_input.warning(f"command.{exc.kind}", f"refused command from {msg.source_id or '?'}: {exc}")
            return
        for warning in result.warnings:
            self.node.bad_input.warning("command.clamped", f"command from {msg.source_id or '?'}: {warning}")
        for obs in result.observations:
            self.publish(obs)

    def on_tick(self) -> None:
        obs = self.robot.tick()
        if obs is not None:
            self.publish(obs)

    def on_reset(self, request: Any) -> Any:
        return serve_reset(self.robot, request, self.publish, self.node.bad_input)

    def close(self) -> None:
        self.serial(self.robot.close)  # a renderer's OpenGL context, on its own thread
        self.serial.close()


def wire(node: Node) -> SimRobotNode:
    return SimRobotNode(node, node.load_config(SimRobotConfig))


def main(argv: list[str] | None = None) -> int:
    return run_node("sim_robot", wire, argv)


if __name__ == "__main__":
    raise SystemExit(main())
