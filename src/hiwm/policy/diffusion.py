"""Diffusion Policy (Chi et al. 2023), small: conv encoder + 1-D temporal conditional U-Net.

Observations of ``n_obs_steps`` frames condition (FiLM) a U-Net that denoises a ``horizon``-step
action sequence starting at the oldest observation; steps ``n_obs_steps - 1`` onwards are executed,
``n_action_steps`` of them. Trained as DDPM (epsilon prediction, squared-cosine schedule), sampled
with DDIM in ``inference_steps`` steps.

Each observation is, by default (``conditioning="state"``), the task state the conv encoder's
state head reads off the frame: a bottleneck of a few values the encoder learns
from the datasets' true states, while the U-Net learns from true states (noised) on whole batches.
This trains in CPU minutes what end-to-end image conditioning (``"keypoints"``: every camera's
keypoints and the proprio, the task option without a state head) needs GPU days for on a task
whose action is a point in the image.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hiwm.policy.encoder import STATE_DIM, ImageEncoder, conditioning_states, state_loss
from hiwm.policy.frozen import FrozenCall
from hiwm.policy.normalize import check_relative_actions, from_action_frame, make_normalizer, to_action_frame


@dataclass
class DiffusionConfig:
    image_size: int = 48  # frames are resized to this square size before the encoder
    crop: int = 48  # random crop in training, centre crop at inference (the image size: none)
    n_obs_steps: int = 2
    horizon: int = 16
    n_action_steps: int = 8
    state_dim: int = 2  # proprio
    action_dim: int = 2
    cameras: tuple[str, ...] = ("image",)  # the observation's images, in this order
    channels: tuple[int, ...] = (16, 32, 64)
    keypoints: int = 32
    feature_dim: int = 64
    down_dims: tuple[int, ...] = (32, 64)
    kernel_size: int = 5
    step_embed_dim: int = 64
    train_steps: int = 100
    inference_steps: int = 10
    noise_repeats: int = 2  # noise levels per observation in a batch: the U-Net is cheap next to the encoder
    conditioning: str = "state"  # "state": the state read off the image; "keypoints": image keypoints end to end
    state_head: bool = True  # the encoder's auxiliary true-state head (a task option; "state" needs it)
    aux_weight: float = 1.0  # weight of the encoder's true-state loss (training only)
    image_batch: int = 16  # "state": samples per batch whose images train the encoder
    state_noise: float = 0.01  # "state": noise on true states standing in for read ones (normalised units,
    # about a trained encoder's error on positions: 0.008-0.014)
    normalization: str = "min_max"
    relative_actions: bool = True  # predict actions as offsets from the current agent state

    def __post_init__(self) -> None:
        self.channels, self.down_dims, self.cameras = tuple(self.channels), tuple(self.down_dims), tuple(self.cameras)
        if not self.cameras:
            raise ValueError("a policy needs at least one camera")
        if self.conditioning == "state" and not self.state_head:
            raise ValueError("conditioning 'state' reads the state head: set state_head or conditioning 'keypoints'")
        check_relative_actions(self.relative_actions, self.state_dim, self.action_dim)
        if self.n_obs_steps < 1 or self.n_action_steps < 1:
            raise ValueError("n_obs_steps and n_action_steps must be >= 1")
        if self.n_obs_steps - 1 + self.n_action_steps > self.horizon:
            raise ValueError(f"horizon {self.horizon} < n_obs_steps - 1 + n_action_steps")
        if self.horizon % 2 ** (len(self.down_dims) - 1):
            raise ValueError(f"horizon {self.horizon} must be divisible by 2^{len(self.down_dims) - 1}")
        if not 0 < self.inference_steps <= self.train_steps:
            raise ValueError("inference_steps must be in (0, train_steps]")
        if self.conditioning not in ("state", "keypoints"):
            raise ValueError(f"conditioning must be 'state' or 'keypoints', got {self.conditioning!r}")

    @property
    def action_start(self) -> int:
        """Index in the predicted sequence of the action for the current observation."""
        return self.n_obs_steps - 1

    #: The conditioning that needs no state head.
    IMAGE_CONDITIONING = "keypoints"


def squared_cos_alphas_cumprod(steps: int, max_beta: float = 0.999) -> torch.Tensor:
    """alpha-bar of the squared-cosine schedule (Nichol and Dhariwal 2021), betas capped at ``max_beta``."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), max_beta) for i in range(steps)]
    return torch.cumprod(1 - torch.tensor(betas, dtype=torch.float64), 0).float()


class SinusoidalEmbedding(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device) / (half - 1))
        args = t.float()[:, None] * freqs[None]
        return torch.cat([args.sin(), args.cos()], -1)


def conv_block(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(cin, cout, k, padding=k // 2), nn.GroupNorm(8, cout), nn.Mish())


class FiLMResBlock(nn.Module):
    """Two conv blocks; the condition scales and shifts the first one's output per channel.

    The FiLM projections of all blocks are one Linear in the U-Net (one op instead of one per
    block: at batch 1 the sampler's time is per-op overhead); ``film`` is this block's slice.
    """

    def __init__(self, cin: int, cout: int, k: int) -> None:
        super().__init__()
        self.block1, self.block2 = conv_block(cin, cout, k), conv_block(cout, cout, k)
        self.film_dim = 2 * cout
        self.skip = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, film: torch.Tensor) -> torch.Tensor:
        scale, shift = film.unsqueeze(-1).chunk(2, 1)
        h = self.block1(x) * (1 + scale) + shift
        return self.block2(h) + self.skip(x)


class TemporalUNet(nn.Module):
    """(B, T, action_dim) noisy actions, timestep, (B, cond_dim) -> predicted noise (B, T, action_dim)."""

    def __init__(self, action_dim: int, cond_dim: int, down_dims: tuple[int, ...], k: int, step_dim: int) -> None:
        super().__init__()
        self.step_embed = nn.Sequential(
            SinusoidalEmbedding(step_dim),
            nn.Linear(step_dim, 4 * step_dim),
            nn.Mish(),
            nn.Linear(4 * step_dim, step_dim),
        )
        c = step_dim + cond_dim
        dims = (action_dim, *down_dims)
        pairs = list(itertools.pairwise(dims))
        self.down = nn.ModuleList()
        for i, (a, b) in enumerate(pairs):
            last = i == len(pairs) - 1
            down = nn.Identity() if last else nn.Conv1d(b, b, 3, 2, 1)
            self.down.append(nn.ModuleList([FiLMResBlock(a, b, k), FiLMResBlock(b, b, k), down]))
        mid = down_dims[-1]
        self.mid = nn.ModuleList([FiLMResBlock(mid, mid, k), FiLMResBlock(mid, mid, k)])
        self.up = nn.ModuleList()
        for a, b in reversed(pairs[1:]):
            up = nn.ConvTranspose1d(a, a, 4, 2, 1)
            self.up.append(nn.ModuleList([FiLMResBlock(2 * b, a, k), FiLMResBlock(a, a, k), up]))
        self.final = nn.Sequential(conv_block(down_dims[0], down_dims[0], k), nn.Conv1d(down_dims[0], action_dim, 1))
        blocks = [m for m in self.modules() if isinstance(m, FiLMResBlock)]  # the order forward() visits them
        self.film_sizes = [b.film_dim for b in blocks]
        self.film = nn.Sequential(nn.Mish(), nn.Linear(c, sum(self.film_sizes)))

    def films(self, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """(B,) timesteps and (B, cond_dim) conditions -> every block's FiLM parameters (B, film_dim).

        The sampler computes them for all its steps in one call: at batch 1 each op costs more
        than its arithmetic."""
        return self.film(torch.cat([self.step_embed(t), cond], -1))

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor | None,
        cond: torch.Tensor | None,
        films: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``films`` (from :meth:`films`) replaces ``t`` and ``cond`` when given."""
        films = iter((self.films(t, cond) if films is None else films).split(self.film_sizes, -1))
        x = x.transpose(1, 2)
        skips = []
        for res1, res2, down in self.down:
            x = res2(res1(x, next(films)), next(films))
            skips.append(x)
            x = down(x)
        for res in self.mid:
            x = res(x, next(films))
        for res1, res2, up in self.up:
            x = torch.cat([x, skips.pop()], 1)
            x = up(res2(res1(x, next(films)), next(films)))
        return self.final(x).transpose(1, 2)


class DiffusionPolicy(nn.Module):
    """The model: ``forward(batch)`` is the per-sample training loss, ``predict`` samples action sequences."""

    backbone_name = "diffusion"

    def __init__(self, cfg: DiffusionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.state_norm = make_normalizer(cfg.normalization, cfg.state_dim)
        self.action_norm = make_normalizer(cfg.normalization, cfg.action_dim)
        self.encoder = ImageEncoder(
            cfg.channels, cfg.keypoints, cfg.crop, cameras=len(cfg.cameras), state_head=cfg.state_head
        )
        if cfg.conditioning == "keypoints":
            self.feature = nn.Sequential(nn.Linear(self.encoder.out_dim, cfg.feature_dim), nn.ReLU())
        obs_dim = STATE_DIM if cfg.conditioning == "state" else cfg.feature_dim
        cond_dim = cfg.n_obs_steps * (obs_dim + cfg.state_dim)
        self.unet = TemporalUNet(cfg.action_dim, cond_dim, cfg.down_dims, cfg.kernel_size, cfg.step_embed_dim)
        self.register_buffer("alphas_cumprod", squared_cos_alphas_cumprod(cfg.train_steps), persistent=False)
        self.sampler_unet = FrozenCall(self.unet, lambda unet, x, films: unet(x, None, None, films=films))

    def encode(
        self, images: torch.Tensor, states: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, n, 3 K, S, S) images, (B, n, state_dim) raw proprio and, in training with the state head,
        (B, n, 6) true states -> the U-Net's condition (B, cond_dim) and the encoder's per-sample loss (B,)."""
        cfg = self.cfg
        if cfg.conditioning == "state":
            obs, loss = conditioning_states(self.encoder, images, targets, cfg.image_batch, cfg.state_noise)
        else:
            b, n = images.shape[:2]
            kp = self.encoder.keypoints(images.flatten(0, 1)).view(b, n, -1)
            obs, loss = self.feature(kp), images.new_zeros(b).float()
            if targets is not None and cfg.state_head:
                loss = state_loss(self.encoder.state(kp[:, -1]), targets[:, -1])
        return torch.cat([obs, self.state_norm(states)], -1).flatten(1), loss

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        cond, encoder_loss = self.encode(batch["image"], batch["state"], batch.get("aux_target"))
        x0 = self.action_norm(to_action_frame(batch["action"], batch["state"], self.cfg.relative_actions))
        r = self.cfg.noise_repeats
        cond, x0 = cond.repeat_interleave(r, 0), x0.repeat_interleave(r, 0)
        t = torch.randint(0, self.cfg.train_steps, (x0.shape[0],), device=x0.device)
        noise = torch.randn_like(x0)
        ab = self.alphas_cumprod[t].view(-1, 1, 1)
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        loss = F.mse_loss(self.unet(xt, t, cond), noise, reduction="none").mean((1, 2)).view(-1, r).mean(1)
        return loss + self.cfg.aux_weight * encoder_loss

    @torch.inference_mode()
    def predict(self, images: torch.Tensor, states: torch.Tensor, generator: torch.Generator | None = None):
        """DDIM (eta 0) from pure noise: (B, horizon, action_dim) actions in raw units."""
        cfg = self.cfg
        cond, _ = self.encode(images, states)
        b = cond.shape[0]
        x = torch.randn(b, cfg.horizon, cfg.action_dim, generator=generator, device=cond.device)
        stride = cfg.train_steps // cfg.inference_steps
        steps = list(range(cfg.train_steps - stride, -1, -stride))
        t = torch.tensor(steps, device=cond.device).repeat_interleave(b)
        films = self.unet.films(t, cond.repeat(len(steps), 1)).view(len(steps), b, -1)
        ab = self.alphas_cumprod.tolist()  # plain floats: no tensor ops for the scalars
        for i, t in enumerate(steps):
            ab_t, ab_prev = ab[t], ab[t - stride] if t - stride >= 0 else 1.0
            eps = self.sampler_unet(x, films[i])
            x0 = ((x - math.sqrt(1 - ab_t) * eps) / math.sqrt(ab_t)).clamp(-1, 1)
            x = math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev) * eps
        return from_action_frame(self.action_norm.inverse(x), states, cfg.relative_actions)
