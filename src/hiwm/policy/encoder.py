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
    """Feature map -> expected (x, y) of ``keypoints`` learned attention maps: positions, what a task of
    moving things in the image is about."""

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
    """(..., C, H, W) float -> (..., C, size, size); area averaging when shrinking."""
    if images.shape[-2:] == (size, size):
        return images
    lead = images.shape[:-3]
    flat = images.reshape(-1, *images.shape[-3:])
    mode = "area" if images.shape[-1] >= size and images.shape[-2] >= size else "bilinear"
    out = F.interpolate(flat, size=(size, size), mode=mode)
    return out.reshape(*lead, images.shape[-3], size, size)


def random_crop(images: torch.Tensor, crop: int) -> torch.Tensor:
    """One random ``crop`` x ``crop`` window per sample (B, ..., C, S, S); the same window for its obs
    steps and cameras."""
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


STATE_DIM = 6  # the state the encoder's state head reads: agent xy, block xy, sin, cos


class ImageEncoder(nn.Module):
    """Frames of ``cameras`` cameras -> spatial-softmax keypoints (-> the task's true state read off them).

    Frames arrive as (N, 3 * cameras, S, S), the cameras stacked along channels; one backbone and
    one keypoint layer serve every camera, whose keypoints are concatenated.

    With ``state_head``, a head reads the true state (positions in [-1, 1], sin and cos of angles)
    off the keypoints, trained on the true states the task's datasets record. Reading an object's
    pose off the image is what a policy of a task whose action is a point in the image must learn
    first; a direct target teaches it in a few thousand steps instead of the hundreds of thousands
    the action loss alone needs.
    """

    def __init__(
        self,
        channels: tuple[int, ...],
        keypoints: int,
        crop: int,
        hidden: int = 128,
        cameras: int = 1,
        state_head: bool = True,
    ) -> None:
        super().__init__()
        self.crop, self.cameras = crop, cameras
        self.backbone = ConvBackbone(channels)
        self.pool = SpatialSoftmax(self.backbone.out_channels, keypoints)
        self.out_dim = 2 * keypoints * cameras
        if state_head:
            self.head = nn.Sequential(nn.Linear(self.out_dim, hidden), nn.ReLU(), nn.Linear(hidden, STATE_DIM))

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3 K, S, S) uint8 or [0, 1] float -> backbone feature maps (N K, C, s, s), camera-major
        within each sample (random crop in training)."""
        x = images.float() / 255 if images.dtype == torch.uint8 else images
        x = random_crop(x, self.crop) if self.training else center_crop(x, self.crop)
        return self.backbone(x.reshape(-1, 3, *x.shape[-2:]))

    def keypoints(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3 K, S, S) -> (N, 2 keypoints K)."""
        return self.pool(self.feature_map(images)).reshape(images.shape[0], -1)

    def state(self, keypoints: torch.Tensor) -> torch.Tensor:
        return self.head(keypoints)


def state_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample MSE between read and true states (..., 6); 0 where the target is unknown (NaN)."""
    known = torch.isfinite(target).all(-1)
    err = (pred - torch.nan_to_num(target)).pow(2).mean(-1)
    return torch.where(known, err, torch.zeros_like(err))


def conditioning_states(
    encoder: ImageEncoder, images: torch.Tensor, targets: torch.Tensor | None, image_batch: int, noise: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """States (B, n, 6) that condition a policy, and the encoder's per-sample loss (B,).

    At inference (``targets`` None) every state is read off its image. In training the true state
    stands in where the dataset has one (plus noise of about the encoder's error, so the action
    model learns to live with it), and only the first ``image_batch`` samples, and those without a
    true state (corrections from the world model), go through the image encoder: the action model
    learns from many samples per step at the cost of a few images.
    """
    b, n = images.shape[:2]
    if targets is None:
        return encoder.state(encoder.keypoints(images.flatten(0, 1))).view(b, n, -1), images.new_zeros(b)
    known = torch.isfinite(targets).all(-1).all(-1)
    rows = torch.arange(b, device=images.device)
    rows = rows[(rows < image_batch) | ~known]
    clean = targets.nan_to_num()
    states = clean + noise * torch.randn_like(clean)
    if len(rows) == 0:  # every state known and no images asked for: the action model trains alone
        return states, images.new_zeros(b).float()
    read = encoder.state(encoder.keypoints(images[rows].flatten(0, 1))).view(len(rows), n, -1)
    # rows without a true state are all in ``rows``: the index_copy puts their read states in
    states = states.index_copy(0, rows, torch.where(known[rows, None, None], states[rows], read.detach()))
    loss = images.new_zeros(b).float().index_copy(0, rows, state_loss(read, targets[rows]).mean(-1) * b / len(rows))
    return states, loss
