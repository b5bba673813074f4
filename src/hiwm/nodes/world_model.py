"""The world-model node: a learned world of a task behind the robot's topics, with restorable state handles.

The task is the checkpoint's (``ModelConfig.task``; the ``task`` parameter, when set, must agree);
with no ``checkpoint``, the model hiwm ships for ``task`` (``models/<task>/world_model``).
The node keeps the task's topic contract (:mod:`hiwm.tasks.contract`: each task camera's image,
``robot/state`` with its proprio, ``task/state`` and ``task/status`` from the state probe (no
``task/state`` without a probe), world "model"; actions on ``robot/command``, validated against
the task's action space; ``robot/reset``), so a policy cannot tell it from the task's robot node.
In addition:

  out ``world_model/state``    hiwm_msgs/StateHandle, one per reset, step and restore: snapshot_id is
                               the sha256 of the snapshot bytes, parent the previous step's, the frame
                               as a full-size PNG in ``thumbnail_png``
  out ``world_model/snapshot`` hiwm_msgs/StateSnapshot: the snapshot bytes (keep-all), for the branch cache
  srv ``world_model/restore``  hiwm_msgs/Restore: go back to a state, from the bytes in the request (the
                               branch cache sends them) or one of the newest ``capacity`` this node holds

``robot/reset`` takes a seed (a real random start, rendered), ``use_state`` + state (a true state
of the task, rendered by its env), or ``dataset`` + ``frame_index`` (a recorded frame and the ones
before it). Clocks and QoS as the robot node: lockstep answers each command row with a step at
once; realtime steps at ``rate_hz``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hiwm.comm import Node, new_message
from hiwm.comm.images import encode_png
from hiwm.comm.qos import KEEP_ALL, QoSProfile, profile
from hiwm.comm.runner import run_node
from hiwm.paths import shipped_model
from hiwm.tasks import DEFAULT_TASK, contract
from hiwm.tasks.chunks import CLOCKS, BadCommand
from hiwm.tasks.contract import header
from hiwm.world_model.checkpoint import CheckpointError
from hiwm.world_model.session import SnapshotError
from hiwm.world_model.sim import Step, WorldModelSim, pick_device


@dataclass
class WorldModelConfig:
    checkpoint: str = ""  # directory written by `hiwm train world-model`; "": the task's shipped model
    task: str = ""  # the task served: must be the checkpoint's ("": the checkpoint's)
    rate_hz: float = 10.0
    clock: str = "realtime"  # or "lockstep"
    seed: int = -1  # initial episode's seed; < 0: random
    device: str = "cpu"  # "cpu", "cuda" or "auto"
    threads: int = 1  # torch CPU threads (one is fastest at batch 1 on a busy machine)
    capacity: int = 2048  # snapshots kept for restore (about 21 KiB each)
    frame_id: str = "camera"  # of the world model's own messages (state handles and snapshots)
    qos: str = "auto"

    def __post_init__(self) -> None:
        if not self.checkpoint:
            task = self.task or DEFAULT_TASK
            shipped = shipped_model(task, "world_model")
            if shipped is None:
                raise ValueError(
                    f"checkpoint must name a world-model checkpoint directory (hiwm ships none for task {task!r})"
                )
            self.checkpoint = str(shipped)
        if self.clock not in CLOCKS:
            raise ValueError(f"clock must be one of {CLOCKS}, got {self.clock!r}")
        if not self.rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {self.rate_hz}")

    def output_qos(self) -> QoSProfile:
        if self.qos == "auto":
            return KEEP_ALL if self.clock == "lockstep" else profile("default")
        return profile(self.qos)


class WorldModelNode:
    def __init__(self, node: Node, cfg: WorldModelConfig) -> None:
        self.node, self.cfg = node, cfg
        torch.set_num_threads(max(1, cfg.threads))
        try:
            self.sim = WorldModelSim(
                cfg.checkpoint, cfg.clock, pick_device(cfg.device), max(cfg.seed, 0), cfg.capacity, task=cfg.task
            )
        except CheckpointError as exc:
            raise ValueError(str(exc)) from exc
        self.world = self.sim.world
        qos = cfg.output_qos()
        topics = self.world.topics()
        outputs = [t for t in topics if t != contract.ROBOT_COMMAND]
        if self.sim.probe is None:  # no state probe: the true state is unknown, so it is not published
            outputs.remove(contract.TASK_STATE)
        self.pubs = {topic: node.create_publisher(topics[topic], topic, qos) for topic in outputs}
        self.handles = node.create_publisher("hiwm_msgs/msg/StateHandle", "world_model/state", qos)
        self.snapshots = node.create_publisher("hiwm_msgs/msg/StateSnapshot", "world_model/snapshot", KEEP_ALL)
        node.create_subscription("hiwm_msgs/msg/ActionChunk", "robot/command", self.on_command, KEEP_ALL)
        node.create_service("hiwm_msgs/srv/Reset", "robot/reset", self.on_reset)
        node.create_service("hiwm_msgs/srv/Restore", "world_model/restore", self.on_restore)
        self.sim.reset(seed=cfg.seed if cfg.seed >= 0 else None)  # like the robot: ready, published on reset
        if cfg.clock == "realtime":
            node.create_timer(1.0 / cfg.rate_hz, self.on_tick)
        verdict = "its state probe" if self.sim.probe is not None else "no state probe"
        node.logger.info(
            f"serving {cfg.checkpoint} ({self.world.task.name}, {verdict}) on {node.resolve('robot/command')}"
        )

    def publish(self, step: Step) -> None:
        obs, handle = step.obs, step.handle
        stamp = self.node.now_ns()
        msgs = self.world.observation_messages(obs, handle.episode_id, stamp, obs.done, self.sim.max_metric, "model")
        image = next(iter(self.world.images(obs).values()))  # the first camera
        self.snapshots.publish(
            new_message(
                "hiwm_msgs/msg/StateSnapshot",
                header=header(stamp, self.cfg.frame_id),
                session_id=handle.episode_id,
                snapshot_id=handle.snapshot_id,
                data=np.frombuffer(handle.data, np.uint8),
                observation_state=np.asarray(self.world.proprio(obs), dtype=np.float32),
            )
        )
        self.handles.publish(
            new_message(
                "hiwm_msgs/msg/StateHandle",
                header=header(stamp, self.cfg.frame_id),
                session_id=handle.episode_id,
                snapshot_id=handle.snapshot_id,
                parent_snapshot_id=handle.parent_id,
                step=int(obs.step),
                action_source=int(handle.source),
                action=np.zeros(0, np.float32) if handle.action is None else handle.action,
                thumbnail_png=np.frombuffer(encode_png(image), np.uint8),  # full size: export uses it
            )
        )
        for topic, msg in msgs.items():
            if topic in self.pubs:
                self.pubs[topic].publish(msg)

    def on_command(self, msg: object) -> None:
        try:
            result = self.sim.command(int(msg.horizon), int(msg.action_dim), msg.data, int(msg.source))
        except BadCommand as exc:
            self.node.bad_input.warning(f"command.{exc.kind}", f"refused command from {msg.source_id or '?'}: {exc}")
            return
        for warning in result.warnings:
            self.node.bad_input.warning("command.clamped", f"command from {msg.source_id or '?'}: {warning}")
        for step in result.steps:
            self.publish(step)

    def on_tick(self) -> None:
        step = self.sim.tick()
        if step is not None:
            self.publish(step)

    def on_reset(self, request: object) -> object:
        def answer(success: bool, message: str) -> object:
            episode = self.sim.episode_id if success else ""
            return new_message("hiwm_msgs/srv/Reset_Response", success=success, message=message, episode_id=episode)

        try:
            if request.dataset:
                step = self.sim.reset_from_dataset(request.dataset, int(request.frame_index))
            elif request.use_state:
                step = self.sim.reset(state=np.asarray(request.state, dtype=np.float64))
            else:
                step = self.sim.reset(seed=int(request.seed) if request.seed >= 0 else None)
        except ValueError as exc:
            self.node.bad_input.warning("reset", f"refused reset: {exc}")
            return answer(False, str(exc))
        self.publish(step)
        return answer(True, f"episode {self.sim.episode_id} started")

    def on_restore(self, request: object) -> object:
        def answer(success: bool, message: str) -> object:
            step = self.sim.session.step_count if success else 0
            return new_message("hiwm_msgs/srv/Restore_Response", success=success, message=message, step=step)

        try:
            step = self.sim.restore(request.snapshot_id, bytes(memoryview(request.data)) or None)
        except KeyError:
            self.node.bad_input.warning("restore", f"restore of unknown snapshot {request.snapshot_id!r}")
            return answer(False, f"unknown snapshot {request.snapshot_id!r} (never published or evicted)")
        except (SnapshotError, ValueError) as exc:
            self.node.bad_input.warning("restore", f"restore failed: {exc}")
            return answer(False, str(exc))
        self.publish(step)
        return answer(True, f"restored step {step.obs.step} of episode {step.handle.episode_id}")


def wire(node: Node) -> WorldModelNode:
    return WorldModelNode(node, node.load_config(WorldModelConfig))


def main(argv: list[str] | None = None) -> int:
    return run_node("world_model", wire, argv)


if __name__ == "__main__":
    raise SystemExit(main())
