"""The Push-T robot: gym-pusht physics behind the topics of a real robot with a camera.

Topics (relative, so namespaces and remaps apply; the world-model node publishes the same):
  out ``camera/image``  sensor_msgs/Image rgb8, ``image_size`` square
  out ``robot/state``   sensor_msgs/JointState, names [agent_x, agent_y]: agent position and velocity
  out ``task/state``    sensor_msgs/JointState, names [agent_x, agent_y, block_x, block_y, block_theta]: the true
                        world state (privileged; what a tracker would give in a lab, and what the
                        scripted expert and ``robot/reset`` use)
  out ``task/status``   hiwm_msgs/TaskStatus, world "real"
  in  ``robot/command`` hiwm_msgs/ActionChunk, action_dim 2 (target x, y in [0, 512]); one row per step
(messages built by :mod:`hiwm.tasks.pusht.messages`, the contract the world-model node shares)
Services: ``robot/reset`` hiwm_msgs/Reset (seed >= 0, or use_state + state[5]; seed < 0 continues the
random stream); it answers the new episode_id and publishes the episode's initial observation.

Clocks: ``lockstep`` runs one physics step per command row and publishes each step at once;
``realtime`` runs a control tick at ``rate_hz`` (next queued row, else hold the last target).
QoS ``auto``: lockstep uses reliable keep-all for every output, so no step's image is ever lost
(a slow reader slows the robot down instead, which is what lockstep means); real time uses
reliable keep-last 10 ("default"), so a slow viewer never stalls the control tick.
All outputs of one step carry the same header stamp. Malformed commands are refused (NaN,
infinite, wrong action_dim or length) or clamped (outside the workspace) with a throttled
warning; the node keeps running.
"""

from __future__ import annotations

from dataclasses import dataclass

from hiwm.comm import Node
from hiwm.comm.qos import KEEP_ALL, QoSProfile, profile
from hiwm.comm.runner import run_node
from hiwm.robot.reset import serve_reset
from hiwm.tasks.pusht.env import Observation
from hiwm.tasks.pusht.messages import OUTPUT_TOPICS, TOPICS, observation_messages
from hiwm.tasks.pusht.robot import CLOCKS, BadCommand, PushTRobot


@dataclass
class PushTRobotConfig:
    image_size: int = 96
    rate_hz: float = 10.0
    clock: str = "realtime"  # or "lockstep"
    seed: int = -1  # initial episode's seed; < 0: random
    frame_id: str = "camera"
    qos: str = "auto"  # images, states and status; "auto": keep_all in lockstep, default in real time

    def __post_init__(self) -> None:
        if self.clock not in CLOCKS:
            raise ValueError(f"clock must be one of {CLOCKS}, got {self.clock!r}")
        if not self.rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {self.rate_hz}")
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {self.image_size}")

    def output_qos(self) -> QoSProfile:
        if self.qos == "auto":
            return KEEP_ALL if self.clock == "lockstep" else profile("default")
        return profile(self.qos)


class PushTRobotNode:
    """Publishes observations of a :class:`PushTRobot` and serves its command topic and reset service."""

    def __init__(self, node: Node, cfg: PushTRobotConfig) -> None:
        self.node, self.cfg = node, cfg
        self.robot = PushTRobot(cfg.image_size, cfg.seed if cfg.seed >= 0 else None, cfg.clock)
        qos = cfg.output_qos()
        self.pubs = {topic: node.create_publisher(TOPICS[topic], topic, qos) for topic in OUTPUT_TOPICS}
        node.create_subscription("hiwm_msgs/msg/ActionChunk", "robot/command", self.on_command, KEEP_ALL)
        node.create_service("hiwm_msgs/srv/Reset", "robot/reset", self.on_reset)
        if cfg.clock == "realtime":
            node.create_timer(1.0 / cfg.rate_hz, self.on_tick)

    def publish(self, obs: Observation) -> None:
        msgs = observation_messages(obs, self.robot.episode_id, self.node.now_ns(), "real", self.cfg.frame_id)
        for topic, msg in msgs.items():
            self.pubs[topic].publish(msg)

    def on_command(self, msg: object) -> None:
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

    def on_reset(self, request: object) -> object:
        return serve_reset(self.robot, request, self.publish, self.node.bad_input)


def wire(node: Node) -> PushTRobotNode:
    return PushTRobotNode(node, node.load_config(PushTRobotConfig))


def main(argv: list[str] | None = None) -> int:
    return run_node("pusht_robot", wire, argv)


if __name__ == "__main__":
    raise SystemExit(main())
