"""The state probe: frame -> agent xy, block pose; Push-T coverage and success from a block pose.

The probe is trained on real frames only (so it measures the world, not the model) and then
read on generated frames: this is how task status is computed inside the world model.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hiwm.world_model.config import ProbeConfig

SCALE = 512.0  # workspace size: positions are predicted in units of SCALE


class StateProbe(nn.Module):
    """(B, 3, H, W) frames in [0, 1] -> (B, 6): agent x, y, block x, y (/512), sin, cos of the block angle.

    Convs down to a quarter of the image, then a spatial softmax turns each channel into the
    expected (x, y) of what it responds to (keypoints); an MLP maps the keypoints to the pose.
    Positions are what it must read, and keypoints carry them directly.
    """

    def __init__(self, cfg: ProbeConfig) -> None:
        super().__init__()
        self.cfg = cfg
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
        self.out = nn.Linear(cfg.hidden, 6)
        self.log_temperature = nn.Parameter(torch.zeros(c3))  # per keypoint: how sharply it attends

    def forward(self, x: Tensor) -> Tensor:
        logits = self.features(x).flatten(2) * self.log_temperature.exp()[:, None]
        att = torch.softmax(logits, dim=-1)  # (B, C, cells)
        keypoints = torch.cat([att @ self.gx, att @ self.gy], dim=1)
        return self.out(self.head(keypoints))

    @torch.inference_mode()
    def predict(self, frames: np.ndarray | Tensor) -> np.ndarray:
        """(B, H, W, 3) uint8 -> (B, 5) states: agent x, y, block x, y, angle in [0, 2 pi)."""
        x = torch.as_tensor(np.asarray(frames))
        if x.ndim == 3:
            x = x[None]
        if x.shape[1:] != (self.cfg.image_size, self.cfg.image_size, 3):
            raise ValueError(
                f"frames must be (B, {self.cfg.image_size}, {self.cfg.image_size}, 3), got {tuple(x.shape)}"
            )
        device = next(self.parameters()).device
        y = self(x.to(device).movedim(-1, -3).float() / 255.0).float().cpu().numpy()
        return outputs_to_state(y)

    def success(self, coverage: float) -> bool:
        """The probe's success verdict on a coverage it read: above its fitted threshold."""
        return coverage > self.cfg.success_threshold


def state_to_targets(state: np.ndarray) -> np.ndarray:
    """(N, 5) states -> (N, 6) regression targets."""
    state = np.asarray(state, dtype=np.float64)
    return np.concatenate([state[:, :4] / SCALE, np.sin(state[:, 4:5]), np.cos(state[:, 4:5])], axis=1).astype(
        np.float32
    )


def outputs_to_state(y: np.ndarray) -> np.ndarray:
    angle = np.arctan2(y[:, 4], y[:, 5]) % (2 * math.pi)
    return np.concatenate([y[:, :4] * SCALE, angle[:, None]], axis=1)


def probe_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Weighted MSE on (agent xy, block xy) / 512 and the block angle's (sin, cos).

    The weights put a position error of 1.5 units on a par with 1 degree of block angle, which is
    what they each do to Push-T coverage; unweighted, positions (divided by 512) counted about 20x
    too little and the probe was precise in angle but off by pixels in position.
    """
    return 20 * F.mse_loss(pred[:, :4], target[:, :4]) + F.mse_loss(pred[:, 4:], target[:, 4:])


@lru_cache(maxsize=1)
def _tee_geometry() -> tuple[object, object, float]:
    """gym-pusht's own T shapes and goal polygon (built once from its env class)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from gym_pusht.envs.pusht import PushTEnv, pymunk_to_shapely

    env = PushTEnv(obs_type="state")
    env.reset(seed=0)
    shapes = list(env.block.shapes)
    goal = pymunk_to_shapely(PushTEnv.get_goal_pose_body(np.asarray(env.goal_pose, dtype=np.float64)), shapes)
    env.close()
    return shapes, goal, float(goal.area)


def coverage_from_pose(block_pose: np.ndarray) -> float:
    """Push-T coverage of a block pose (x, y of the body origin, angle), computed as gym-pusht does.

    The T's polygons come from gym-pusht's env; the block is placed like its goal body and
    intersected with the goal with shapely, so the result equals ``info["coverage"]``.
    """
    from gym_pusht.envs.pusht import PushTEnv, pymunk_to_shapely

    pose = np.asarray(block_pose, dtype=np.float64).reshape(-1)
    if pose.shape != (3,) or not np.all(np.isfinite(pose)):
        raise ValueError(f"block_pose must be 3 finite numbers (x, y, angle), got {pose.tolist()}")
    shapes, goal, area = _tee_geometry()
    block = pymunk_to_shapely(PushTEnv.get_goal_pose_body(pose), shapes)
    return float(goal.intersection(block).area / area)
