"""Worlds a policy acts in, and the closed loop that runs it there.

A world has ``reset(seed=, state=)`` and ``step(action)`` returning the task's observation as its
env does; a session world adds ``snapshot()`` (bytes) and ``restore(bytes)``, which is what the
branch cache records and rolls back to, ``task_world`` (its task's
:class:`~hiwm.tasks.world.TaskWorld`) and ``max_metric`` (the episode's best success metric so far).
:class:`RealWorld` is a task's physics as such a world, the oracle control of the experiment (a
perfect world model);
:class:`hiwm.world_model.world.ModelWorld` is the world model as one. :func:`policy_steps` and
:func:`run_episode` run a policy closed loop in any of them, seeing what the task's
:class:`~hiwm.tasks.world.TaskWorld` shows it: policy evaluation and the Hi-WM sessions share them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np

from hiwm.tasks import DEFAULT_TASK, Task, get_task
from hiwm.tasks.world import TaskWorld, load_world


def _world(world: Any) -> Any:
    return load_world(get_task(DEFAULT_TASK)) if world is None else world


def policy_steps(
    policy: Any, env: Any, obs: Any, max_steps: int, world: Any = None
) -> Iterator[tuple[int, np.ndarray, Any]]:
    """The policy closed loop from ``obs``: query a chunk, execute it row by row, showing the policy
    every observation in between. Yields (row index in its chunk, action, next observation) until done
    or ``max_steps``; a caller stops earlier by leaving the loop. ``world`` (a
    :class:`~hiwm.tasks.world.TaskWorld`, default the default task's) says what the policy sees.
    Actions are saturated at the task's action limits, as a servo saturates a target past its range
    (a learnt policy overshoots a limit its demonstrations touch, such as a closed gripper)."""
    world = _world(world)
    space = world.task.action
    observe = getattr(policy, "observe", None)
    while not obs.done and obs.step < max_steps:
        chunk = np.asarray(policy.act(world.policy_observation(obs)), dtype=np.float64).reshape(-1, space.dim)
        chunk = np.clip(chunk, space.low, space.high)
        for i, action in enumerate(chunk):
            obs = env.step(action)
            yield i, action, obs
            if obs.done or obs.step >= max_steps:
                return
            if observe is not None and i < len(chunk) - 1:
                observe(world.policy_observation(obs))


def _video_frame(world: Any, obs: Any) -> np.ndarray:
    """Every camera of an observation side by side."""
    images = list(world.images(obs).values())
    return images[0] if len(images) == 1 else np.concatenate(images, axis=1)


def run_episode(
    policy: Any, env: Any, seed: int, max_steps: int, record: bool = False, world: Any = None
) -> dict[str, Any]:
    """One episode from ``seed``'s initial state (see :func:`policy_steps`); the task's success metric
    per step under its name (e.g. ``coverage``, ``max_coverage``, ``final_coverage``)."""
    world = _world(world)
    metric = world.task.success.metric
    policy.reset()
    obs = env.reset(seed=seed)
    frames, values = [_video_frame(world, obs)], [world.metric(obs)]
    queries = 0
    for row, _, nxt in policy_steps(policy, env, obs, max_steps, world):
        obs = nxt
        queries += row == 0
        frames.append(_video_frame(world, obs))
        values.append(world.metric(obs))
    return {
        "seed": seed,
        "success": bool(obs.success),
        f"max_{metric}": float(max(values)),
        f"final_{metric}": float(values[-1]),
        "steps": int(obs.step),
        "queries": queries,
        metric: values,
        "frames": np.stack(frames) if record else None,
    }


class RealWorld:
    """A task's physics as a session world. A snapshot is the task world's true state, the step and
    the episode's best metric (JSON); restoring resets the env to that state through the task world
    (:meth:`~hiwm.tasks.world.TaskWorld.restore_env`: velocities restart at zero)."""

    def __init__(self, task: Task | str = DEFAULT_TASK, image_size: int | None = None) -> None:
        self.task_world: TaskWorld = load_world(get_task(task) if isinstance(task, str) else task)
        self.env = self.task_world.make_env(image_size)
        self.max_metric = 0.0
        self._last: Any = None

    def _seen(self, obs: Any) -> Any:
        self.max_metric = max(self.max_metric, self.task_world.metric(obs))
        self._last = obs
        return obs

    def reset(self, seed: int | None = None, state: np.ndarray | None = None) -> Any:
        self.max_metric = 0.0
        return self._seen(self.env.reset(seed=seed, state=state))

    def step(self, action: np.ndarray) -> Any:
        return self._seen(self.env.step(action))

    def snapshot(self) -> bytes:
        if self._last is None:
            raise RuntimeError("call reset() first")
        state = self.task_world.state(self._last).tolist()
        return json.dumps({"state": state, "step": self._last.step, "max_coverage": self.max_metric}).encode()

    def restore(self, data: bytes) -> Any:
        state, step, best = self.parse(data)
        obs = self.task_world.restore_env(self.env, state, step, best)
        self.max_metric = best
        return self._seen(obs)

    @staticmethod
    def parse(data: bytes) -> tuple[np.ndarray, int, float]:
        """A snapshot's state, step and best metric; ValueError if it is not a RealWorld snapshot."""
        try:
            doc = json.loads(data)
            return np.asarray(doc["state"], dtype=np.float64), int(doc["step"]), float(doc["max_coverage"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not a RealWorld snapshot: {exc}") from exc

    @staticmethod
    def state_of(data: bytes) -> np.ndarray:
        """The task's true state in a snapshot: ``export_branches``'s ``env_state``."""
        return RealWorld.parse(data)[0]
