"""The Push-T robot's core, free of middleware: episodes, action validation and the two clocks.

``lockstep``: every command row is executed at once, one physics step each, and each
step's observation is returned (fast experiments; the caller sets the pace).
``realtime``: commands are queued and :meth:`PushTRobot.tick`, called at the control
rate, executes the next queued row, or holds the last target when the queue is empty.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass

import numpy as np

from hiwm.tasks.chunks import CLOCKS, BadCommand
from hiwm.tasks.chunks import parse_chunk as parse_task_chunk
from hiwm.tasks.pusht import TASK
from hiwm.tasks.pusht.env import Observation, PushTEnv

ACTION_DIM = 2


@dataclass
class CommandResult:
    """What a command did: observations of the steps it ran (lockstep) and any warnings."""

    observations: list[Observation]
    warnings: list[str]


def parse_chunk(horizon: int, action_dim: int, data: object) -> tuple[np.ndarray, list[str]]:
    """Rows of a Push-T action chunk, validated (:func:`hiwm.tasks.chunks.parse_chunk`): a chunk with
    any NaN/infinite value or the wrong shape is refused whole, out-of-workspace values are clamped
    with one warning per clamped row."""
    return parse_task_chunk(TASK.action, horizon, action_dim, data)


class PushTRobot:
    """A PushTEnv behind the robot's interface: episodes with ids, validated commands, a clock."""

    def __init__(self, image_size: int = 96, seed: int | None = None, clock: str = "lockstep") -> None:
        if clock not in CLOCKS:
            raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
        self.clock = clock
        self.env = PushTEnv(image_size=image_size)
        self.queue: deque[np.ndarray] = deque()
        self.episode_id = ""
        self.target = np.zeros(2)
        self.reset(seed=seed)

    @property
    def observation(self) -> Observation:
        return self.env.last

    def reset(self, seed: int | None = None, state: np.ndarray | None = None) -> Observation:
        """Start a new episode (new id) from a seed or an explicit state; drops queued actions."""
        obs = self.env.reset(seed=seed, state=state)
        self.episode_id = uuid.uuid4().hex[:12]
        self.queue.clear()
        self.target = obs.agent_pos.copy()  # holding still until the first command
        return obs

    def command(self, horizon: int, action_dim: int, data: object) -> CommandResult:
        """Execute (lockstep) or queue (realtime) a chunk. Raises :class:`BadCommand` if refused.

        In real time a new chunk replaces the actions still queued from the previous one.
        """
        rows, warnings = parse_chunk(horizon, action_dim, data)
        if self.observation.done:
            raise BadCommand("done", "the episode is done; call reset first")
        if self.clock == "realtime":
            self.queue.clear()
            self.queue.extend(rows)
            return CommandResult([], warnings)
        observations = []
        for row in rows:
            observations.append(self._step(row))
            if observations[-1].done:
                break
        return CommandResult(observations, warnings)

    def tick(self) -> Observation | None:
        """One real-time control tick: the next queued row, else the last target. None once done."""
        if self.observation.done:
            return None
        return self._step(self.queue.popleft() if self.queue else self.target)

    def _step(self, action: np.ndarray) -> Observation:
        self.target = action
        return self.env.step(action)
