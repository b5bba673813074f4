"""An "outside" policy served through the adapter seam: a plain class with reset() and act(observation).

It wraps one of our checkpoints using nothing but safetensors, JSON and the model class, the way a
policy trained elsewhere would wrap its own weights.
"""

from __future__ import annotations

import numpy as np
import torch

from hiwm.policy.checkpoint import load_model


class OutsidePolicy:
    def __init__(self, checkpoint: str, rows: int = 3) -> None:
        self.model = load_model(checkpoint)
        self.rows = rows
        self.calls = 0

    def reset(self) -> None:
        self.calls = 0

    def act(self, observation: dict) -> np.ndarray:
        self.calls += 1
        image = torch.from_numpy(observation["image"]).permute(2, 0, 1)
        image = torch.nn.functional.interpolate(image[None].float(), size=self.model.cfg.image_size, mode="area")
        n = self.model.cfg.n_obs_steps
        images = image.round().to(torch.uint8)[:, None].expand(1, n, -1, -1, -1)
        states = torch.tensor(observation["state"], dtype=torch.float32).view(1, 1, 2).expand(1, n, 2)
        seq = self.model.predict(images, states)[0].numpy()
        return seq[: self.rows]
