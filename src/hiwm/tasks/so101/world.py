"""The SO-101 pick world behind :class:`~hiwm.tasks.world.TaskWorld`: MuJoCo env and scripted expert."""

from __future__ import annotations

import numpy as np

from hiwm.tasks.so101 import TASK
from hiwm.tasks.so101.env import ArmObservation, So101PickEnv
from hiwm.tasks.so101.expert import ArmExpert, ArmExpertConfig
from hiwm.tasks.world import Expert, TaskWorld


class So101World(TaskWorld):
    def make_env(self, image_size: int | None = None) -> So101PickEnv:
        return So101PickEnv(image_size=self.image_size(image_size))

    def make_expert(self, noise: float = 0.0, seed: int | None = None) -> Expert:
        return ArmExpert(ArmExpertConfig.noisy(noise), seed=seed)

    def images(self, obs: ArmObservation) -> dict[str, np.ndarray]:
        return {c.name: obs.images[c.name] for c in self.task.cameras}

    def proprio(self, obs: ArmObservation) -> np.ndarray:
        return obs.joints

    def velocity(self, obs: ArmObservation) -> np.ndarray:
        return obs.velocities

    def metric(self, obs: ArmObservation) -> float:
        return float(obs.lift)


WORLD = So101World(TASK)
