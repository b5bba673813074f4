"""Worlds a policy acts in, and the closed loop that runs it there.

A world has ``reset(seed=, state=)`` and ``step(action)`` returning an :class:`Observation` as
:class:`PushTEnv` does; a session world adds ``snapshot()`` (bytes) and ``restore(bytes)``, which
is what the branch cache records and rolls back to. :class:`RealWorld` is the gym-pusht physics as
such a world, the oracle control of the experiment (a perfect world model);
:class:`hiwm.world_model.world.ModelWorld` is the world model as one. :func:`policy_steps` and
:func:`run_episode` run a policy closed loop in any of them: policy evaluation and the Hi-WM
sessions share them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np

from hiwm.pusht.env import Observation


def policy_steps(policy: Any, env: Any, obs: Any, max_steps: int) -> Iterator[tuple[int, np.ndarray, Any]]:
    """The policy closed loop from ``obs``: query a chunk, execute it row by row, showing the policy
    every observation in between. Yields (row index in its chunk, action, next observation) until done
    or ``max_steps``; a caller stops earlier by leaving the loop."""
    observe = getattr(policy, "observe", None)
    while not obs.done and obs.step < max_steps:
        chunk = np.asarray(policy.act({"image": obs.image, "state": obs.agent_pos}), dtype=np.float64).reshape(-1, 2)
        for i, action in enumerate(chunk):
            obs = env.step(action)
            yield i, action, obs
            if obs.done or obs.step >= max_steps:
                return
            if observe is not None and i < len(chunk) - 1:
                observe({"image": obs.image, "state": obs.agent_pos})


def run_episode(policy: Any, env: Any, seed: int, max_steps: int, record: bool = False) -> dict[str, Any]:
    """One episode from ``seed``'s initial state (see :func:`policy_steps`)."""
    policy.reset()
    obs = env.reset(seed=seed)
    frames, coverage = [obs.image], [obs.coverage]
    queries = 0
    for row, _, nxt in policy_steps(policy, env, obs, max_steps):
        obs = nxt
        queries += row == 0
        frames.append(obs.image)
        coverage.append(obs.coverage)
    return {
        "seed": seed,
        "success": bool(obs.success),
        "max_coverage": float(obs.max_coverage),
        "final_coverage": float(obs.coverage),
        "steps": int(obs.step),
        "queries": queries,
        "coverage": coverage,
        "frames": np.stack(frames) if record else None,
    }


class RealWorld:
    """The Push-T physics as a session world. A snapshot is the 5-vector state, the step and the
    episode's best coverage (JSON); restoring resets gym-pusht to that state (velocities restart at
    zero)."""

    def __init__(self, image_size: int = 96) -> None:
        from hiwm.pusht.env import PushTEnv

        self.env = PushTEnv(image_size)

    def reset(self, seed: int | None = None, state: np.ndarray | None = None) -> Observation:
        return self.env.reset(seed=seed, state=state)

    def step(self, action: np.ndarray) -> Observation:
        return self.env.step(action)

    def snapshot(self) -> bytes:
        obs = self.env.last
        return json.dumps({"state": obs.state.tolist(), "step": obs.step, "max_coverage": obs.max_coverage}).encode()

    def restore(self, data: bytes) -> Observation:
        return self.env.restore(*self.parse(data))

    @staticmethod
    def parse(data: bytes) -> tuple[np.ndarray, int, float]:
        """A snapshot's state, step and best coverage; ValueError if it is not a RealWorld snapshot."""
        try:
            doc = json.loads(data)
            return np.asarray(doc["state"], dtype=np.float64), int(doc["step"]), float(doc["max_coverage"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not a RealWorld snapshot: {exc}") from exc

    @staticmethod
    def state_of(data: bytes) -> np.ndarray:
        """The Push-T state (agent xy, block xy, angle) in a snapshot: ``export_branches``'s ``env_state``."""
        return RealWorld.parse(data)[0]
