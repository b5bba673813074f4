"""A task's simulated robot, free of middleware: episodes, action chunks and the two clocks.

:class:`SimRobot` runs any task's env (:meth:`hiwm.tasks.world.TaskWorld.make_env`) behind the robot's
interface. ``lockstep``: every row of a command is executed at once, one env step each, and each step's
observation is returned (fast experiments; the caller sets the pace). ``realtime``: commands are queued
and :meth:`SimRobot.tick`, called at the control rate, executes the next queued row, or holds the last
target when the queue is empty. Chunks are checked by :func:`hiwm.tasks.chunks.parse_chunk` against
the task's action space: refused whole (:class:`~hiwm.tasks.chunks.BadCommand`) or clamped with warnings.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from hiwm.tasks.chunks import CLOCKS, BadCommand, parse_chunk
from hiwm.tasks.world import TaskWorld


@dataclass
class CommandResult:
    """What a command did: observations of the steps it ran (lockstep) and any warnings."""

    observations: list[Any]
    warnings: list[str]


class WorldThread:
    """Runs every call into a world on one thread of its own, one at a time.

    MuJoCo's OpenGL context belongs to the thread that made it, while a node's callbacks may come
    on several; one call at a time also keeps each step's messages together and in order."""

    def __init__(self, name: str = "world") -> None:
        self.pool = ThreadPoolExecutor(1, thread_name_prefix=name)

    def __call__(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the world's thread, waited for."""
        return self.pool.submit(fn, *args).result()

    def close(self) -> None:
        self.pool.shutdown()


class SimRobot:
    """A task's env with episode ids, validated chunks and a clock; ``metric`` of every step kept."""

    def __init__(
        self, world: TaskWorld, image_size: int | None = None, seed: int | None = None, clock: str = "lockstep"
    ) -> None:
        if clock not in CLOCKS:
            raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
        self.world, self.task, self.clock = world, world.task, clock
        self.env = world.make_env(image_size)
        self.queue: deque[np.ndarray] = deque()
        self.episode_id = ""
        self.target = np.zeros(self.task.action_dim)
        self.best_metric = 0.0
        self.reset(seed=seed)

    @property
    def observation(self) -> Any:
        return self.env.last

    def reset(self, seed: int | None = None, state: np.ndarray | None = None) -> Any:
        """Start a new episode (new id) from a seed or an explicit task state; drops queued actions.

        ValueError (from the env, and the episode goes on) for a state it refuses."""
        obs = self.env.reset(seed=seed, state=state)
        self.episode_id = uuid.uuid4().hex[:12]
        self.queue.clear()
        self.target = self.world.hold_action(obs)  # holding still until the first command
        self.best_metric = self.world.metric(obs)
        return obs

    def command(self, horizon: int, action_dim: int, data: object) -> CommandResult:
        """Execute (lockstep) or queue (realtime) a chunk. Raises :class:`BadCommand` if refused.

        In real time a new chunk replaces the actions still queued from the previous one.
        """
        rows, warnings = parse_chunk(self.task.action, horizon, action_dim, data)
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

    def tick(self) -> Any | None:
        """One real-time control tick: the next queued row, else the last target. None once done."""
        if self.observation.done:
            return None
        return self._step(self.queue.popleft() if self.queue else self.target)

    def _step(self, action: np.ndarray) -> Any:
        self.target = action
        obs = self.env.step(action)
        self.best_metric = max(self.best_metric, self.world.metric(obs))
        return obs

    def close(self) -> None:
        close = getattr(self.env, "close", None)
        if callable(close):
            close()
