"""Worlds for Hi-WM sessions: reset/step/Observation as :class:`PushTEnv`, plus snapshot/restore.

:class:`ModelWorld` is the world model, a thin adapter over
:class:`hiwm.world_model.sim.WorldModelSim`, the world-model node's core: frames from the model, the
rest (agent, block) from the state probe reading each frame, success from the task's success
detector (Push-T's: the probe's coverage). So one rollout
loop (``hiwm.policy.evaluate.run_episode``) runs in either world, and a seed starts both from the
same real initial state.

:class:`RealWorld` is the gym-pusht physics with the same snapshot/restore, for the oracle control:
the same sessions, operator and post-training with a perfect world, which separates what the world
model's fidelity costs from what the loop gives.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hiwm.pusht.env import MAX_STEPS, Observation


class ModelWorld:
    def __init__(self, checkpoint: str | Path, device: str = "cpu", max_steps: int = MAX_STEPS, seed: int = 0) -> None:
        from hiwm.world_model.sim import WorldModelSim

        self.sim = WorldModelSim(checkpoint, "lockstep", device, seed, max_steps=max_steps)
        if self.sim.detector is None:
            raise ValueError(
                f"{checkpoint}: the world model has no success detector nor state probe; success cannot be judged"
            )

    @property
    def last(self) -> Observation | None:
        return self.sim.last

    def reset(self, seed: int | None = None, state: np.ndarray | None = None) -> Observation:
        return self.sim.reset(seed=seed, state=state).obs

    def step(self, action: np.ndarray) -> Observation:
        return self.sim.command(1, 2, np.asarray(action, dtype=np.float64)).steps[0].obs

    def snapshot(self) -> bytes:
        return self.sim.handle.data

    def restore(self, data: bytes) -> Observation:
        from hiwm.world_model.sim import snapshot_id

        return self.sim.restore(snapshot_id(data), data).obs


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
