"""Push-T's world behind :class:`~hiwm.tasks.world.TaskWorld`: gym-pusht env, scripted expert, its datasets' layout.

Push-T recordings keep lerobot/pusht's layout (one ``observation.image``, motors ``x, y``,
``next.reward`` = coverage / 0.95); its topics are the generic contract's, ``task/state`` with the
agent's velocity.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hiwm.tasks.pusht import PUSHT_TASK, TASK, pusht_features
from hiwm.tasks.pusht.env import Observation, PushTEnv, coverage_from_pose, outcome_fields, validate_state
from hiwm.tasks.pusht.expert import ExpertConfig, ScriptedExpert
from hiwm.tasks.world import Expert, StateCoding, TaskWorld

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

    def camera_features(self) -> dict[str, str]:
        return {self.task.cameras[0].name: IMAGE_KEY}

    def outcome(self, metric: float, success: bool, done: bool) -> dict[str, float | bool]:
        return outcome_fields(float(metric), bool(success), bool(done))

    def policy_observation(self, obs: Observation) -> dict[str, Any]:
        return {"image": obs.image, "state": obs.agent_pos}

    def state_velocity(self, obs: Observation) -> np.ndarray:
        return np.concatenate([obs.agent_vel, np.zeros(3)])  # the agent's; the block's is not observed

    # -- the world model's hooks ------------------------------------------------------------------
    def validate_state(self, state: object) -> np.ndarray:
        return validate_state(state)

    def metric_from_state(self, state: np.ndarray) -> float:
        """Coverage of the state's block pose (entries 2-4)."""
        return coverage_from_pose(np.asarray(state, dtype=np.float64)[2:])

    def state_coding(self) -> StateCoding:
        # positions over the 512 px table; weighted so that 1.5 px of position error counts as much as
        # 1 degree of block angle, which is what each does to coverage (unweighted, positions counted
        # about 20x too little and a probe was precise in angle but off by pixels)
        return StateCoding(scale=(512.0,) * 4 + (1.0,), angles=(4,), position_weight=20.0, angle_weight=1.0)

    def state_errors(self, read: np.ndarray, true: np.ndarray) -> dict[str, float]:
        """Mean distances (px) of the agent and the block, and the block angle's mean error (degrees)."""
        read, true = np.asarray(read, dtype=np.float64), np.asarray(true, dtype=np.float64)
        dangle = np.abs((read[:, 4] - true[:, 4] + np.pi) % (2 * np.pi) - np.pi)
        return {
            "agent_px": float(np.linalg.norm(read[:, :2] - true[:, :2], axis=1).mean()),
            "block_px": float(np.linalg.norm(read[:, 2:4] - true[:, 2:4], axis=1).mean()),
            "angle_deg": float(np.degrees(dangle).mean()),
        }

    def make_observation(
        self,
        images: dict[str, np.ndarray],
        proprio: np.ndarray,
        velocity: np.ndarray,
        state: np.ndarray | None,
        metric: float,
        success: bool,
        step: int,
        done: bool,
        max_metric: float,
    ) -> Observation:
        return Observation(
            image=images[self.task.cameras[0].name],
            agent_pos=np.asarray(proprio, dtype=np.float64),
            agent_vel=np.asarray(velocity, dtype=np.float64),
            block_pose=np.asarray(state[2:]) if state is not None else np.zeros(3),
            state=state,
            coverage=float(metric),
            success=bool(success),
            step=int(step),
            done=bool(done),
            max_coverage=float(max_metric),
        )

    def restore_env(self, env: PushTEnv, state: np.ndarray, step: int, max_metric: float) -> Observation:
        return env.restore(state, step, max_metric)

    def model_interface(self) -> dict[str, Any]:
        # the world model's defaults are Push-T's (one camera read from lerobot/pusht's
        # observation.image, actions a point on the 512 px table, drawn as a bump on its latent grid),
        # so a Push-T model's config, and the fingerprint of its snapshots, stay the first models'
        return {}


WORLD = PushTWorld(TASK, PUSHT_TASK)
