"""The SO-101 pick world behind :class:`~hiwm.tasks.world.TaskWorld`: MuJoCo env and scripted expert."""

from __future__ import annotations

import numpy as np

from hiwm.tasks.so101 import JOINTS, TASK
from hiwm.tasks.so101.env import ArmObservation, So101PickEnv
from hiwm.tasks.so101.expert import ArmExpert, ArmExpertConfig
from hiwm.tasks.so101.scene import CUBE_HALF
from hiwm.tasks.world import Expert, StateCoding, TaskWorld

_CUBE = slice(len(JOINTS), len(JOINTS) + 3)  # the cube's centre x, y, z in the state


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

    # -- the world model's hooks ------------------------------------------------------------------
    def metric_from_state(self, state: np.ndarray) -> float:
        """The cube's lift above the table: every episode starts with the cube resting on it."""
        return float(np.asarray(state, dtype=np.float64)[_CUBE][2] - CUBE_HALF)

    def state_coding(self) -> StateCoding:
        # joints in radians and the quaternion are O(1) already; the cube's position in decimetres
        scale = [1.0] * len(self.task.observations.state)
        scale[_CUBE] = [0.1] * 3
        return StateCoding(scale=tuple(scale))

    def state_errors(self, read: np.ndarray, true: np.ndarray) -> dict[str, float]:
        """Mean joint error (rad) and mean distance of the cube's centre (m)."""
        read, true = np.asarray(read, dtype=np.float64), np.asarray(true, dtype=np.float64)
        n = len(JOINTS)
        return {
            "joints_rad": float(np.abs(read[:, :n] - true[:, :n]).mean()),
            "cube_m": float(np.linalg.norm(read[:, _CUBE] - true[:, _CUBE], axis=1).mean()),
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
    ) -> ArmObservation:
        # an unknown cube pose is NaN, never a made-up one
        cube = np.asarray(state, dtype=np.float64)[len(JOINTS) :] if state is not None else np.full(7, np.nan)
        return ArmObservation(
            images=dict(images),
            joints=np.asarray(proprio, dtype=np.float64),
            velocities=np.asarray(velocity, dtype=np.float64),
            cube_pose=cube,
            lift=float(metric),
            success=bool(success),
            step=int(step),
            done=bool(done),
        )

    def restore_env(self, env: So101PickEnv, state: np.ndarray, step: int, max_metric: float) -> ArmObservation:
        return env.restore(state, step)  # the arm at rest at the state's joints, holding them


WORLD = So101World(TASK)
