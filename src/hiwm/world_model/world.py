"""The world model as a world for rollouts: reset/step/Observation as :class:`PushTEnv`, plus
snapshot/restore (see :mod:`hiwm.worlds`).

:class:`ModelWorld` is a thin adapter over :class:`hiwm.world_model.sim.WorldModelSim`, the
world-model node's core: frames from the model, the rest (agent, block) from the state probe reading
each frame, success from the task's success detector (Push-T's: the probe's coverage). So one
rollout loop (:func:`hiwm.worlds.run_episode`) runs in either world, and a seed starts both from the
same real initial state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hiwm.tasks.pusht.env import MAX_STEPS, Observation


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
