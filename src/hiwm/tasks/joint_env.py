"""What a joint-position world offers a robot node: the protocol :mod:`hiwm.robot.arm` drives.

A task whose world implements :class:`JointEnv` is registered in :mod:`hiwm.tasks` (``make_joint_env``)
and can stand in for a lab arm under ros2_control: its action is one absolute position target per
joint, in the task's action order, and its observation reports the joints, the cameras and the
task's success metric by the metric's name.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class JointObservation(Protocol):
    """One step's observation; the task's success metric is an attribute named ``Task.success.metric``."""

    images: dict[str, np.ndarray]  # camera name -> (H, W, 3) uint8
    joints: np.ndarray  # joint positions, in the task's action order
    velocities: np.ndarray
    state: np.ndarray  # the privileged state, in ``Task.observations.state`` order
    success: bool
    done: bool
    step: int


class JointEnv(Protocol):
    """Episodes of a joint-position world with exact restore (``get_state`` / ``set_state``)."""

    low: np.ndarray  # joint limits, in the task's action order
    high: np.ndarray

    @property
    def last(self) -> JointObservation: ...

    @property
    def state_size(self) -> int: ...

    def camera_fovy(self) -> dict[str, float]:
        """Each camera's vertical field of view (degrees) of a pinhole with square pixels."""
        ...

    def reset(self, seed: int | None = None, state: object = None) -> JointObservation:
        """A new episode from ``seed``, or placed at ``state`` (a ``JointObservation.state``), at rest;
        ValueError, and nothing changed, for a state that is not one."""
        ...

    def step(self, action: object) -> JointObservation: ...

    def validate_action(self, action: object) -> np.ndarray:
        """The action as float64, or ValueError (wrong length, not finite, out of limits)."""
        ...

    def get_state(self) -> np.ndarray: ...

    def set_state(self, state: object) -> JointObservation:
        """Continue from a ``get_state`` vector; ValueError, and nothing changed, if it is not one."""
        ...

    def close(self) -> None: ...
