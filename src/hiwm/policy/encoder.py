"""A small convolutional image encoder with GroupNorm (BatchNorm misbehaves with EMA and tiny batches)."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn


def conv_stage(cin: int, cout: int, groups: int) -> nn.Sequential:
    """Halve the resolution, then one 3x3 conv at that resolution."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, 2, 1),
        nn.GroupNorm(min(groups, cout), cout),
        nn.ReLU(),
        nn.Conv2d(cout, cout, 3, 1, 1),
        nn.GroupNorm(min(groups, cout), cout),
        nn.ReLU(),
    )


class ConvBackbone(nn.Module):
    """(B, 3, S, S) in [0, 1] -> feature map (B, C, S / 2^n, S / 2^n)."""

    def __init__(self, channels: tuple[int, ...] = (32, 64, 128), groups: int = 8) -> None:
        super().__init__()
        dims = (3, *channels)
        self.stages = nn.Sequential(*(conv_stage(a, b, groups) for a, b in itertools.pairwise(dims)))
        self.out_channels = channels[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x * 2 - 1)


class SpatialSoftmax(nn.Module):
    """Feature map -> expected (x, y) of ``keypoints`` learned attention maps: positions, which Push-T is about."""

    def __init__(self, channels: int, keypoints: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, keypoints, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        h, w = x.shape[-2:]
        ys, xs = torch.meshgrid(
            torch.linspace(-1, 1, h, device=x.device), torch.linspace(-1, 1, w, device=x.device), indexing="ij"
        )
        grid = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1).to(x.dtype)  # (h w, 2)
        att = x.flatten(2).softmax(-1)  # (b, k, h w)
        return (att @ grid).flatten(1)  # (b, 2 k)


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """(..., 3, H, W) float -> (..., 3, size, size); area averaging when shrinking."""
    if images.shape[-2:] == (size, size):
        return images
    lead = images.shape[:-3]
    flat = images.reshape(-1, *images.shape[-3:])
    mode = "area" if images.shape[-1] >= size and images.shape[-2] >= size else "bilinear"
    out = F.interpolate(flat, size=(size, size), mode=mode)
    return out.reshape(*lead, 3, size, size)


def random_crop(images: torch.Tensor, crop: int) -> torch.Tensor:
    """One random ``crop`` x ``crop`` window per sample (B, ..., 3, S, S); the same window for its obs steps."""
    s = images.shape[-1]
    if crop >= s:
        return images
    b = images.shape[0]
    ox = torch.randint(0, s - crop + 1, (b,)).tolist()
    oy = torch.randint(0, s - crop + 1, (b,)).tolist()
    return torch.stack([images[i, ..., oy[i] : oy[i] + crop, ox[i] : ox[i] + crop] for i in range(b)])


def center_crop(images: torch.Tensor, crop: int) -> torch.Tensor:
    s = images.shape[-1]
    if crop >= s:
        return images
    o = (s - crop) // 2
    return images[..., o : o + crop, o : o + crop]
