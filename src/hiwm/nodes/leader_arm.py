"""Leader arm: reads a Dynamixel or Feetech servo bus and publishes joint states and operator actions.

Topics (relative, so namespaces and remaps apply):
  out ``leader/joint_states``  sensor_msgs/JointState: calibrated joint angles (rad) and velocities (rad/s)
  out ``operator/action``      hiwm_msgs/ActionChunk, source HUMAN, horizon 1: the calibration's action map
                               (by default the ``task``'s leader-arm map onto its action space), at
                               ``action_rate_hz`` (the task's control rate unless given)
The calibration YAML (``calibration`` parameter; see ``config/leader/``) names the protocol, port,
servos and action map. Checksum errors are retried and counted; a silent or vanished bus is reported
once and reopened with backoff, the node keeps running and resumes publishing when the servos answer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from hiwm.comm import Node, new_message
from hiwm.comm.runner import run_node
from hiwm.data.lerobot import SOURCE_HUMAN
from hiwm.leader.bus import LeaderArmReader
from hiwm.leader.calibration import load_calibration
from hiwm.leader.mapping import build_action_map
from hiwm.tasks import DEFAULT_TASK, get_task


@dataclass
class LeaderArmConfig:
    calibration: str = ""  # YAML path (required)
    port: str = ""  # overrides the calibration's port
    rate_hz: float = 100.0
    timeout_ms: float = 20.0  # per sync read
    retries: int = 2  # extra reads after a checksum error
    max_timeouts: int = 5  # silent reads in a row before the bus counts as disconnected
    frame_id: str = "leader"
    source_id: str = "leader_arm"
    publish_actions: bool = True
    action_rate_hz: float = -1.0  # operator actions per second; < 0: the task's control rate; 0: every read
    task: str = DEFAULT_TASK  # the registered task (hiwm tasks) driven when the calibration maps no action
    stats_period_s: float = 10.0  # log read statistics this often (0: never)

    def __post_init__(self) -> None:
        if not self.calibration:
            raise ValueError("set the 'calibration' parameter to a leader-arm YAML file (see config/leader/)")
        if not self.rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {self.rate_hz}")
        spec = get_task(self.task)  # ValueError naming the known tasks
        if self.action_rate_hz < 0:
            self.action_rate_hz = spec.fps


class LeaderArmNode:
    def __init__(self, node: Node, cfg: LeaderArmConfig) -> None:
        self.node, self.cfg = node, cfg
        self.cal = load_calibration(cfg.calibration)
        self.action_map = build_action_map(self.cal, cfg.task)
        self.reader = LeaderArmReader(
            self.cal, cfg.port, cfg.timeout_ms / 1000.0, cfg.retries, cfg.max_timeouts, logger=node.logger
        )
        self.joint_pub = node.create_publisher("sensor_msgs/msg/JointState", "leader/joint_states")
        self.action_pub = node.create_publisher("hiwm_msgs/msg/ActionChunk", "operator/action")
        self.last: tuple[float, np.ndarray] | None = None
        self.last_stats = time.monotonic()
        self.next_action = 0.0
        self.action_dt = 1.0 / cfg.action_rate_hz if cfg.action_rate_hz > 0 else 0.0  # 0: every read
        node.create_timer(1.0 / cfg.rate_hz, self.tick)

    def tick(self) -> None:
        raw = self.reader.poll()
        now = time.monotonic()
        if self.cfg.stats_period_s > 0 and now - self.last_stats >= self.cfg.stats_period_s:
            self.last_stats = now
            self.node.logger.info(f"bus stats: {self.reader.stats}")
        if raw is None:
            self.last = None  # no velocity across a gap
            return
        q = self.cal.to_radians(raw)
        vel = (q - self.last[1]) / max(now - self.last[0], 1e-6) if self.last is not None else np.zeros_like(q)
        self.last = (now, q)
        head = new_message("std_msgs/msg/Header", stamp=self.node.stamp(), frame_id=self.cfg.frame_id)
        self.joint_pub.publish(
            new_message(
                "sensor_msgs/msg/JointState",
                header=head,
                name=self.cal.names,
                position=q,
                velocity=vel,
                effort=np.zeros(0),
            )
        )
        if self.cfg.publish_actions and now >= self.next_action:
            # A steady action rate without drift; after a gap (bus down), restart the schedule from now.
            self.next_action += self.action_dt
            if self.next_action <= now:
                self.next_action = now + self.action_dt
            action = self.action_map(q).astype(np.float32)
            self.action_pub.publish(
                new_message(
                    "hiwm_msgs/msg/ActionChunk",
                    header=head,
                    source=SOURCE_HUMAN,
                    source_id=self.cfg.source_id,
                    horizon=1,
                    action_dim=action.shape[0],
                    dt=self.action_dt or 1.0 / self.cfg.rate_hz,
                    data=action,
                )
            )


def wire(node: Node) -> LeaderArmNode:
    return LeaderArmNode(node, node.load_config(LeaderArmConfig))


def main(argv: list[str] | None = None) -> int:
    return run_node("leader_arm", wire, argv)


if __name__ == "__main__":
    raise SystemExit(main())
