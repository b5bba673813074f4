"""The robot's topic contract: what one Push-T observation looks like on the wire.

The Push-T robot node, the expert collector (for bags) and the world-model node all
build their messages here, so nothing downstream can tell them apart.

  ``camera/image``  sensor_msgs/Image rgb8, square
  ``robot/state``   sensor_msgs/JointState, names ``agent_x, agent_y``: agent position and velocity
  ``task/state``    sensor_msgs/JointState, names :data:`TASK_STATE_NAMES`: the true world state
                    (privileged: what a tracker gives in a lab; the expert and ``robot/reset`` use it)
  ``task/status``   hiwm_msgs/TaskStatus
  ``robot/command`` hiwm_msgs/ActionChunk (in), action_dim 2: target agent x, y in [0, 512]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hiwm.comm.images import numpy_to_image
from hiwm.comm.interfaces import new_message
from hiwm.tasks.chunks import chunk_message

AGENT_NAMES = ("agent_x", "agent_y")
TASK_STATE_NAMES = ("agent_x", "agent_y", "block_x", "block_y", "block_theta")
#: Relative topic names and types of the robot contract (outputs first, then the command input).
TOPICS = {
    "camera/image": "sensor_msgs/msg/Image",
    "robot/state": "sensor_msgs/msg/JointState",
    "task/state": "sensor_msgs/msg/JointState",
    "task/status": "hiwm_msgs/msg/TaskStatus",
    "robot/command": "hiwm_msgs/msg/ActionChunk",
}
OUTPUT_TOPICS = ("robot/state", "task/state", "task/status", "camera/image")  # publish order: image last


def stamp_from_ns(ns: int) -> Any:
    """``builtin_interfaces/msg/Time`` for a time in nanoseconds."""
    return new_message("builtin_interfaces/msg/Time", sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def header(stamp_ns: int, frame_id: str) -> Any:
    return new_message("std_msgs/msg/Header", stamp=stamp_from_ns(stamp_ns), frame_id=frame_id)


def observation_messages(
    obs: Any, episode_id: str, stamp_ns: int, world: str = "real", frame_id: str = "camera"
) -> dict[str, Any]:
    """The messages of one observation (a :class:`hiwm.tasks.pusht.env.Observation`), one shared stamp.

    ``obs.state`` may be None (a world model without a state probe): ``task/state`` is then
    left out. Returned in publish order, the image last, so a reader that sees a step's
    image has everything of that step.
    """
    head = header(stamp_ns, frame_id)
    vel = np.asarray(obs.agent_vel, dtype=np.float64)
    out: dict[str, Any] = {
        "robot/state": new_message(
            "sensor_msgs/msg/JointState",
            header=head,
            name=list(AGENT_NAMES),
            position=np.asarray(obs.agent_pos, dtype=np.float64),
            velocity=vel,
            effort=np.zeros(0),
        )
    }
    if obs.state is not None:
        out["task/state"] = new_message(
            "sensor_msgs/msg/JointState",
            header=head,
            name=list(TASK_STATE_NAMES),
            position=np.asarray(obs.state, dtype=np.float64),
            velocity=np.concatenate([vel, np.zeros(3)]),
            effort=np.zeros(0),
        )
    out["task/status"] = new_message(
        "hiwm_msgs/msg/TaskStatus",
        header=head,
        episode_id=episode_id,
        step=int(obs.step),
        coverage=float(obs.coverage),
        max_coverage=float(obs.max_coverage),
        success=bool(obs.success),
        done=bool(obs.done),
        world=world,
    )
    out["camera/image"] = numpy_to_image(obs.image, head)
    return out


def action_chunk(
    rows: np.ndarray, stamp_ns: int, source: int, source_id: str = "", dt: float = 0.1, frame_id: str = "world"
) -> Any:
    """An ActionChunk carrying ``rows`` (horizon x 2, or one action)."""
    return chunk_message(np.asarray(rows).reshape(-1, 2), stamp_ns, source, source_id, dt, frame_id)
