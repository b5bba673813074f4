"""The world model as a world for rollouts: reset/step and the task's own observations as its env
gives them, plus snapshot/restore (see :mod:`hiwm.worlds`).

:class:`ModelWorld` is a thin adapter over :class:`hiwm.world_model.sim.WorldModelSim`, the
world-model node's core: frames from the model, the task state from the state probe reading each
frame, success from the task's success detector (by default the task's metric of the probe's
state). So one rollout loop (:func:`hiwm.worlds.run_episode`) runs in either world, and a seed
starts both from the same real initial state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


class ModelWorld:
    """A session world (``task_world``, ``max_metric``, ``snapshot``/``restore``) of a world-model
    checkpoint; ``task`` (optional) must be the checkpoint's, ``max_steps`` defaults to its episode length."""

    def __init__(
        self,
        checkpoint: str | Path,
        device: str = "cpu",
        max_steps: int | None = None,
        seed: int = 0,
        task: str = "",
    ) -> None:
        from hiwm.world_model.sim import WorldModelSim

        self.sim = WorldModelSim(checkpoint, "lockstep", device, seed, max_steps=max_steps, task=task)
        if self.sim.detector is None:
            raise ValueError(
                f"{checkpoint}: the world model has no success detector nor state probe; success cannot be judged"
            )
        self.task_world = self.sim.world

    @property
    def last(self) -> Any:
        return self.sim.last

    @property
    def max_metric(self) -> float:
        """The episode's best success metric so far."""
        return self.sim.max_metric

    def reset(self, seed: int | None = None, state: np.ndarray | None = None) -> Any:
        return self.sim.reset(seed=seed, state=state).obs

    def step(self, action: np.ndarray) -> Any:
        return self.sim.command(1, self.sim.task.action_dim, np.asarray(action, dtype=np.float64)).steps[0].obs

    def snapshot(self) -> bytes:
        return self.sim.handle.data

    def restore(self, data: bytes) -> Any:
        from hiwm.world_model.sim import snapshot_id

        return self.sim.restore(snapshot_id(data), data).obs
