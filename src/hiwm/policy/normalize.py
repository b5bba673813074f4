"""Normalization of states and actions, stats kept as module buffers, and the actions' frame.

The stats travel inside the checkpoint's safetensors, so a loaded policy normalizes exactly
as it did in training.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class MinMax(nn.Module):
    """x -> 2 (x - min) / (max - min) - 1, per dimension; a constant dimension maps to 0."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("min", torch.zeros(dim))
        self.register_buffer("max", torch.ones(dim))

    def fit(self, values: np.ndarray) -> MinMax:
        values = np.asarray(values, dtype=np.float64).reshape(-1, self.min.numel())
        if not np.all(np.isfinite(values)):
            raise ValueError("cannot fit normalization stats: non-finite values in the data")
        self.min.copy_(torch.from_numpy(values.min(0)).float())
        self.max.copy_(torch.from_numpy(values.max(0)).float())
        return self

    def _span(self) -> torch.Tensor:
        return (self.max - self.min).clamp_min(1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * (x - self.min) / self._span() - 1

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return (y + 1) / 2 * self._span() + self.min


class MeanStd(nn.Module):
    """x -> (x - mean) / std, per dimension."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, values: np.ndarray) -> MeanStd:
        values = np.asarray(values, dtype=np.float64).reshape(-1, self.mean.numel())
        if not np.all(np.isfinite(values)):
            raise ValueError("cannot fit normalization stats: non-finite values in the data")
        self.mean.copy_(torch.from_numpy(values.mean(0)).float())
        self.std.copy_(torch.from_numpy(values.std(0)).float().clamp_min(1e-6))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.std + self.mean


def make_normalizer(kind: str, dim: int) -> MinMax | MeanStd:
    if kind == "min_max":
        return MinMax(dim)
    if kind == "mean_std":
        return MeanStd(dim)
    raise ValueError(f"normalization must be 'min_max' or 'mean_std', got {kind!r}")


def check_relative_actions(relative: bool, state_dim: int, action_dim: int) -> None:
    if relative and state_dim != action_dim:
        raise ValueError(f"relative actions need actions in the state's space: state_dim {state_dim} != {action_dim}")


def to_action_frame(actions: torch.Tensor, states: torch.Tensor, relative: bool) -> torch.Tensor:
    """(B, H, A) raw actions, (B, n, S) raw states -> what the model predicts: offsets from the
    current state when ``relative`` (a chunk's shape matters to a policy, not where it lies)."""
    return actions - states[:, -1:] if relative else actions


def from_action_frame(actions: torch.Tensor, states: torch.Tensor, relative: bool) -> torch.Tensor:
    """The inverse of :func:`to_action_frame`."""
    return actions + states[:, -1:] if relative else actions
