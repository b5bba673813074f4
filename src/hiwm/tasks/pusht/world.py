"""Push-T's world behind :class:`~hiwm.tasks.world.TaskWorld`: gym-pusht env, scripted expert, its datasets' layout.

Push-T recordings keep lerobot/pusht's layout (one ``observation.image``, motors ``x, y``,
``next.reward`` = coverage / 0.95); its topics are the generic contract's, ``task/state`` with the
agent's velocity.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hiwm.tasks.pusht import PUSHT_TASK, TASK, pusht_features
from hiwm.tasks.pusht.env import Observation, PushTEnv, outcome_fields
from hiwm.tasks.pusht.expert import ExpertConfig, ScriptedExpert
from hiwm.tasks.world import Expert, TaskWorld

IMAGE_KEY = "observation.image"


class PushTWorld(TaskWorld):
    def make_env(self, image_size: int | None = None) -> PushTEnv:
        return PushTEnv(image_size=self.image_size(image_size))

    def make_expert(self, noise: float = 0.0, seed: int | None = None) -> Expert:
        return ScriptedExpert(ExpertConfig.noisy(noise), seed=seed)

    def images(self, obs: Observation) -> dict[str, np.ndarray]:
        return {self.task.cameras[0].name: obs.image}

    def proprio(self, obs: Observation) -> np.ndarray:
        return obs.agent_pos

    def velocity(self, obs: Observation) -> np.ndarray:
        return obs.agent_vel

    def metric(self, obs: Observation) -> float:
        return float(obs.coverage)

    def features(self, image_size: int | None = None) -> dict[str, dict]:
        return pusht_features(self.image_size(image_size))

    def frame(self, obs: Observation, action: np.ndarray, nxt: Observation, done: bool) -> dict[str, Any]:
        return {
            IMAGE_KEY: obs.image,
            "observation.state": obs.agent_pos,
            "action": action,
            "observation.environment_state": obs.state,
            **outcome_fields(nxt.coverage, nxt.success, done),
        }

    def policy_observation(self, obs: Observation) -> dict[str, Any]:
        return {"image": obs.image, "state": obs.agent_pos}

    def state_velocity(self, obs: Observation) -> np.ndarray:
        return np.concatenate([obs.agent_vel, np.zeros(3)])  # the agent's; the block's is not observed


WORLD = PushTWorld(TASK, PUSHT_TASK)
