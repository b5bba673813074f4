"""Jog keys -> the next action, for any task: steps in the action space, or the end effector through IK.

A task's :class:`~hiwm.tasks.base.JogMap` says which key moves which axis by how much. Keys on
action axes add their step to that dimension (a 2-D agent's pixels in x and y, an arm's gripper in radians).
Keys on the end-effector axes ``ee_x, ee_y, ee_z`` move the point the task's kinematics drives by
their step (metres, robot base frame) and the task's IK turns it into joint targets. Every result
is clipped to the action space's limits.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import numpy as np

from hiwm.tasks.base import EE_AXES, JogKey, Task


class EndEffector(Protocol):
    """A task's kinematics for jogging, over whole actions (the axes it does not drive pass through)."""

    def hold(self, proprio: np.ndarray) -> np.ndarray:
        """The action that holds the robot where ``proprio`` (the action's dimensions, measured) says it is."""
        ...

    def position(self, action: np.ndarray) -> np.ndarray:
        """Where the end effector settles under ``action``: x, y, z (m)."""
        ...

    def reach(self, action: np.ndarray, position: np.ndarray) -> np.ndarray:
        """An action near ``action`` whose end effector settles at ``position``."""
        ...


class Jogger:
    """One task's key -> action mapping; ``scale`` multiplies every key's step."""

    def __init__(self, task: Task, scale: float = 1.0) -> None:
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f"jog scale must be > 0, got {scale}")
        self.task = task
        self.scale = float(scale)
        self.low = np.asarray(task.action.low, dtype=np.float64)
        self.high = np.asarray(task.action.high, dtype=np.float64)
        self.bindings: dict[str, JogKey] = {k.key: k for k in task.jog.keys}
        self.kinematics: EndEffector | None = None
        if task.jog.kinematics is not None:
            self.kinematics = task.jog.kinematics()

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.bindings)

    @property
    def dim(self) -> int:
        return self.task.action_dim

    def help(self) -> list[dict]:
        """The keys for a key help: key, what it does, axis, step and unit."""
        units = dict(zip(self.task.action.names, self.task.action.units, strict=True))
        return [
            {
                "key": k.key,
                "label": k.help,
                "axis": k.axis,
                "step": k.step * self.scale,
                "unit": "m" if k.axis in EE_AXES else units[k.axis],
            }
            for k in self.task.jog.keys
        ]

    def hold(self, proprio: np.ndarray) -> np.ndarray:
        """The action holding the robot at the measured ``proprio`` (what a first key press starts from)."""
        proprio = self._check(proprio, "proprio")
        held = proprio if self.kinematics is None else self.kinematics.hold(proprio)
        return np.clip(np.asarray(held, dtype=np.float64), self.low, self.high)

    def jog(self, action: np.ndarray, pressed: Iterable[str]) -> np.ndarray | None:
        """The action after one step of every key in ``pressed`` from ``action``; None if none is a jog key.

        Keys held together add up (W and D: a diagonal). Unknown keys raise ValueError.
        """
        action = self._check(action, "action")
        names = self.task.action.names
        step = np.zeros(self.dim)
        ee_step = np.zeros(len(EE_AXES))
        moved = False
        for key in pressed:
            binding = self.bindings.get(key)
            if binding is None:
                raise ValueError(f"{key!r} is not a jog key of task {self.task.name}; keys are {''.join(self.keys)}")
            moved = True
            if binding.axis in EE_AXES:
                ee_step[EE_AXES.index(binding.axis)] += binding.step * self.scale
            else:
                step[names.index(binding.axis)] += binding.step * self.scale
        if not moved:
            return None
        target = action.copy()
        if np.any(ee_step) and self.kinematics is not None:
            position = np.asarray(self.kinematics.position(target), dtype=np.float64)
            target = np.asarray(self.kinematics.reach(target, position + ee_step), dtype=np.float64)
            if target.shape != action.shape or not np.all(np.isfinite(target)):
                raise ValueError(f"task {self.task.name}'s IK gave no finite action for {position + ee_step}")
        return np.clip(target + step, self.low, self.high)

    def _check(self, values: np.ndarray, what: str) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if values.shape != (self.dim,) or not np.all(np.isfinite(values)):
            raise ValueError(f"{what} must be {self.dim} finite numbers ({', '.join(self.task.action.names)})")
        return values
