"""A policy that asks to stay where the agent is: fills the policy seat of a graph under test."""

from __future__ import annotations

import numpy as np


class HoldPolicy:
    def reset(self) -> None:
        pass

    def act(self, observation: dict) -> np.ndarray:
        return np.asarray(observation["state"], dtype=np.float64)[None]
