"""Merges the policy's and the operator's action streams into the robot's command topic.

Topics (relative names):
  in  ``policy/action``   hiwm_msgs/ActionChunk from the policy server
  in  ``operator/action`` hiwm_msgs/ActionChunk from the teleop bridge (browser, keyboard, leader arm)
  in  ``robot/state``     sensor_msgs/JointState: where the robot is in the action space (the start of a
                          smooth handover), by the task's action names, else the first action_dim positions
  in  ``task/status``     hiwm_msgs/TaskStatus: a new episode_id forgets the last commanded position
  out ``robot/command``   hiwm_msgs/ActionChunk, source kept (POLICY or HUMAN)
  out ``arbiter/phase``   hiwm_msgs/Phase, latched (late joiners get the phase in force)
Services: ``arbiter/set_phase`` (hiwm_msgs/SetPhase): pause, take over, hand back.
Chunks must have the task's (``task`` parameter) action_dim; NaN or a wrong shape is refused whole.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hiwm.comm import Node, new_message
from hiwm.comm.qos import KEEP_ALL, LATCHED
from hiwm.comm.runner import run_node
from hiwm.tasks.chunks import BadCommand, chunk_message, parse_chunk
from hiwm.teleop.arbiter import PHASE_NAMES, Arbiter, ArbiterConfig, Emit, PhaseChange


class ArbiterNode:
    def __init__(self, node: Node, cfg: ArbiterConfig) -> None:
        self.node = node
        self.arbiter = Arbiter(cfg)
        self.space = cfg.task_spec.action
        self.episode_id = ""
        self.command_pub = node.create_publisher("hiwm_msgs/msg/ActionChunk", "robot/command", KEEP_ALL)
        self.phase_pub = node.create_publisher("hiwm_msgs/msg/Phase", "arbiter/phase", LATCHED)
        node.create_subscription("hiwm_msgs/msg/ActionChunk", "policy/action", self.on_policy, KEEP_ALL)
        node.create_subscription("hiwm_msgs/msg/ActionChunk", "operator/action", self.on_operator, KEEP_ALL)
        node.create_subscription("sensor_msgs/msg/JointState", "robot/state", self.on_state, KEEP_ALL)
        node.create_subscription("hiwm_msgs/msg/TaskStatus", "task/status", self.on_status, KEEP_ALL)
        node.create_service("hiwm_msgs/srv/SetPhase", "arbiter/set_phase", self.on_set_phase)
        self.publish_phase("start")

    def rows(self, msg: Any) -> np.ndarray | None:
        """The chunk's rows, validated as the robot validates them (refused whole if malformed or NaN)."""
        try:
            rows, _ = parse_chunk(self.space, int(msg.horizon), int(msg.action_dim), msg.data)
        except BadCommand as exc:
            self.node.bad_input.warning(f"chunk.{exc.kind}", f"refused chunk from {msg.source_id or '?'}: {exc}")
            return None
        return rows

    def send(self, emit: Emit | None, dt: float) -> None:
        if emit is not None:
            self.command_pub.publish(chunk_message(emit.rows, self.node.now_ns(), emit.source, emit.source_id, dt))

    def publish_phase(self, reason: str, change: PhaseChange | None = None) -> None:
        if change is not None:
            self.node.logger.info(
                f"phase {PHASE_NAMES[change.previous]} -> {PHASE_NAMES[change.phase]} ({change.reason or reason})"
            )
        msg = new_message("hiwm_msgs/msg/Phase", header=self.node.header(), phase=self.arbiter.phase, reason=reason)
        self.phase_pub.publish(msg)

    def on_policy(self, msg: Any) -> None:
        rows = self.rows(msg)
        if rows is not None:
            self.send(self.arbiter.on_policy(rows, msg.source_id), msg.dt or 0.1)

    def on_operator(self, msg: Any) -> None:
        rows = self.rows(msg)
        if rows is None:
            return
        emit, change = self.arbiter.on_operator(rows, msg.source_id)
        if change is not None:
            self.publish_phase(change.reason, change)
        self.send(emit, msg.dt or 0.1)

    def on_state(self, msg: Any) -> None:
        names, position = list(msg.name), np.asarray(msg.position, dtype=np.float64)
        if len(names) == len(position) and set(self.space.names) <= set(names):
            position = position[[names.index(n) for n in self.space.names]]
        else:
            position = position[: self.space.dim]
        if position.size == self.space.dim and np.all(np.isfinite(position)):
            self.arbiter.on_agent(position)

    def on_status(self, msg: Any) -> None:
        if msg.episode_id != self.episode_id:
            self.episode_id = msg.episode_id
            self.arbiter.reset()

    def on_set_phase(self, request: Any) -> Any:
        try:
            change = self.arbiter.set_phase(int(request.phase), request.reason)
        except ValueError as exc:
            return new_message(
                "hiwm_msgs/srv/SetPhase_Response", success=False, message=str(exc), phase=self.arbiter.phase
            )
        if change is not None:
            self.publish_phase(request.reason or "service", change)
        name = PHASE_NAMES[self.arbiter.phase]
        message = f"phase is {name}" if change else f"already {name}"
        return new_message("hiwm_msgs/srv/SetPhase_Response", success=True, message=message, phase=self.arbiter.phase)


def wire(node: Node) -> ArbiterNode:
    return ArbiterNode(node, node.load_config(ArbiterConfig))


def main(argv: list[str] | None = None) -> int:
    return run_node("arbiter", wire, argv)


if __name__ == "__main__":
    raise SystemExit(main())
