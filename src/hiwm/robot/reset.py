"""The ``robot/reset`` service (hiwm_msgs/Reset) of a simulated robot, shared by the robot nodes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from hiwm.comm.interfaces import new_message
from hiwm.comm.node import ThrottledLog


class Resettable(Protocol):
    episode_id: str

    def reset(self, seed: int | None = None, state: np.ndarray | None = None) -> Any: ...


def serve_reset(robot: Resettable, request: Any, publish: Callable[[Any], None], log: ThrottledLog) -> Any:
    """Answer a Reset request: a new episode from ``seed`` (< 0: the random stream) or ``use_state``,
    its first observation published; a refusal (dataset frames, a bad state) is logged and answered."""

    def answer(success: bool, message: str) -> Any:
        episode = robot.episode_id if success else ""
        return new_message("hiwm_msgs/srv/Reset_Response", success=success, message=message, episode_id=episode)

    if request.dataset:
        return answer(False, "the real robot cannot reset from a dataset frame; use seed or use_state")
    try:
        if request.use_state:
            obs = robot.reset(state=np.asarray(request.state, dtype=np.float64))
        else:
            obs = robot.reset(seed=int(request.seed) if request.seed >= 0 else None)
    except ValueError as exc:
        log.warning("reset", f"refused reset: {exc}")
        return answer(False, str(exc))
    publish(obs)
    return answer(True, f"episode {robot.episode_id} started")
