"""The state probe: frame -> the task's true state, and the task's success metric of what it read.

The probe is trained on real frames only (so it measures the world, not the model) and then
read on generated frames: this is how task state and status are computed inside the world model.
What the state holds, how it is regressed and how it is judged are the task world's
(:meth:`~hiwm.tasks.world.TaskWorld.state_coding`, :meth:`~hiwm.tasks.world.TaskWorld.metric_from_state`).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hiwm.tasks import DEFAULT_TASK, Task, get_task
from hiwm.tasks.world import StateCoding, TaskWorld, load_world
from hiwm.world_model.config import ProbeConfig


@cache
def task_world(task: str) -> TaskWorld:
    """The world of the task called ``task`` (imports its physics once)."""
    return load_world(get_task(task))


class StateProbe(nn.Module):
    """(B, 3, H, W) frames in [0, 1] -> (B, coding.dim): the task's state, coded as its task world says.

    Convs down to a quarter of the image, then a spatial softmax turns each channel into the
    expected (x, y) of what it responds to (keypoints); an MLP maps the keypoints to the state.
    Positions are what it must read, and keypoints carry them directly.
    """

    def __init__(self, cfg: ProbeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.world = task_world(cfg.task)
        self.coding = self.world.state_coding()
        c0, c1, c2, c3 = cfg.channels
        self.features = nn.Sequential(
            nn.Conv2d(3, c0, 3, stride=2, padding=1),
            nn.GroupNorm(min(4, c0), c0),
            nn.GELU(),
            nn.Conv2d(c0, c1, 3, padding=1),
            nn.GroupNorm(min(4, c1), c1),
            nn.GELU(),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1),
            nn.GroupNorm(min(4, c2), c2),
            nn.GELU(),
            nn.Conv2d(c2, c3, 3, padding=1),
        )
        side = cfg.image_size // 4
        grid = (torch.arange(side, dtype=torch.float32) + 0.5) / side
        self.register_buffer("gx", grid.repeat(side), persistent=False)  # column of each flattened cell
        self.register_buffer("gy", grid.repeat_interleave(side), persistent=False)
        self.head = nn.Sequential(
            nn.Linear(2 * c3, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, cfg.hidden), nn.GELU()
        )
        self.out = nn.Linear(cfg.hidden, self.coding.dim)
        self.log_temperature = nn.Parameter(torch.zeros(c3))  # per keypoint: how sharply it attends

    def forward(self, x: Tensor) -> Tensor:
        logits = self.features(x).flatten(2) * self.log_temperature.exp()[:, None]
        att = torch.softmax(logits, dim=-1)  # (B, C, cells)
        keypoints = torch.cat([att @ self.gx, att @ self.gy], dim=1)
        return self.out(self.head(keypoints))

    @torch.inference_mode()
    def predict(self, frames: np.ndarray | Tensor) -> np.ndarray:
        """(B, H, W, 3) uint8 -> (B, S) states in the task's order (angles in [0, 2 pi))."""
        x = torch.as_tensor(np.asarray(frames))
        if x.ndim == 3:
            x = x[None]
        if x.shape[1:] != (self.cfg.image_size, self.cfg.image_size, 3):
            raise ValueError(
                f"frames must be (B, {self.cfg.image_size}, {self.cfg.image_size}, 3), got {tuple(x.shape)}"
            )
        device = next(self.parameters()).device
        y = self(x.to(device).movedim(-1, -3).float() / 255.0).float().cpu().numpy()
        return self.coding.states(y)

    def metric(self, state: np.ndarray) -> float:
        """The task's success metric of a state it read."""
        return self.world.metric_from_state(state)

    def success(self, metric: float) -> bool:
        """The probe's success verdict on a metric it read: above its fitted threshold."""
        return metric > self.cfg.success_threshold


def state_to_targets(state: np.ndarray, task: Task | str = DEFAULT_TASK) -> np.ndarray:
    """(N, S) true states of ``task`` -> its (N, coding.dim) regression targets (NaN rows stay NaN)."""
    return task_world(task if isinstance(task, str) else task.name).state_coding().targets(state)


def probe_loss(pred: Tensor, target: Tensor, coding: StateCoding) -> Tensor:
    """The coding's weighted MSE: ``position_weight`` x that of the positions + ``angle_weight`` x
    that of the angles' (sin, cos)."""
    n = len(coding.positions)
    terms = []
    if n:
        terms.append(coding.position_weight * F.mse_loss(pred[:, :n], target[:, :n]))
    if coding.angles:
        terms.append(coding.angle_weight * F.mse_loss(pred[:, n:], target[:, n:]))
    loss = terms[0]
    for term in terms[1:]:
        loss = loss + term
    return loss
