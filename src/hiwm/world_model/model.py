"""A compact action-conditioned world model: conv encoder -> latent dynamics -> pixel-shuffle decoder.

Frames (96x96) are encoded once into a small latent grid (16 x 12 x 12, values in [-1, 1]).
The dynamics sees the last ``context`` latents and the action (target agent xy) twice: as a
Gaussian bump on the grid where the target is (so a conv net can act locally) and as FiLM
scales/shifts of its residual blocks (current and previous action). It predicts the next
latent as a residual of the newest one. Only the dynamics and the decoder run per step, so a
step stays a few tens of MFLOPs; nothing runs at the full 96x96 resolution except a pixel
shuffle. Encoder and decoder are also trained as an autoencoder on real frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hiwm.world_model.config import ModelConfig


class ResBlock(nn.Module):
    """Two 3x3 convs with an optional FiLM; the last conv starts at zero so blocks start as identity."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor, scale: Tensor | None = None, shift: Tensor | None = None) -> Tensor:
        h = x if scale is None else x * (1 + scale) + shift
        return x + self.conv2(F.gelu(self.conv1(h)))


class Encoder(nn.Module):
    """uint8-range frames (B, 3, H, W) in [0, 1] -> latents (B, Z, H/8, W/8) in [-1, 1]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c1, c2, c3 = cfg.enc_channels
        self.net = nn.Sequential(
            nn.Conv2d(3, c1, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(c2, c3, 3, stride=2, padding=1),
            ResBlock(c3),
            nn.GELU(),
            nn.Conv2d(c3, cfg.latent_channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.net(x))


class Decoder(nn.Module):
    """Latents (B, Z, g, g) -> frames (B, 3, 8g, 8g), roughly in [0, 1] (clamp for display)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c1, c2, c3 = cfg.dec_channels
        self.inp = nn.Conv2d(cfg.latent_channels, c1, 3, padding=1)
        self.block = ResBlock(c1)
        self.up1 = nn.Conv2d(c1, 4 * c2, 3, padding=1)
        self.up2 = nn.Conv2d(c2, 4 * c3, 3, padding=1)
        self.up3 = nn.Conv2d(c3, 4 * 3, 3, padding=1)
        # Push-T's table and goal never move: a learned background image carries them, so the
        # convs only have to draw the agent and the block (training starts it at the mean frame)
        self.background = nn.Parameter(torch.full((1, 3, cfg.image_size, cfg.image_size), 0.5))

    def forward(self, z: Tensor) -> Tensor:
        h = self.block(F.gelu(self.inp(z)))
        h = F.gelu(F.pixel_shuffle(self.up1(F.gelu(h)), 2))
        h = F.gelu(F.pixel_shuffle(self.up2(h), 2))
        return F.pixel_shuffle(self.up3(h), 2) + self.background


class Dynamics(nn.Module):
    """(context latents, action, previous action) -> next latent."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c, z = cfg.dyn_channels, cfg.latent_channels
        self.inp = nn.Conv2d(cfg.context * z + 1, c, 3, padding=1)
        self.film = nn.Sequential(nn.Linear(2 * cfg.action_dim, 64), nn.GELU(), nn.Linear(64, 2 * c * cfg.dyn_blocks))
        nn.init.zeros_(self.film[-1].weight)
        nn.init.zeros_(self.film[-1].bias)
        self.blocks = nn.ModuleList(ResBlock(c) for _ in range(cfg.dyn_blocks))
        self.out = nn.Conv2d(c, z, 3, padding=1)
        g = cfg.grid
        # cell centres in action units, for the target bump
        centres = (torch.arange(g, dtype=torch.float32) + 0.5) / g * cfg.action_scale
        self.register_buffer("centres", centres, persistent=False)

    def bump(self, action: Tensor) -> Tensor:
        """(B, 2) actions -> (B, 1, g, g) Gaussian at the target (x -> column, y -> row)."""
        sigma = self.cfg.action_scale / self.cfg.grid
        gx = torch.exp(-0.5 * ((self.centres[None, :] - action[:, :1]) / sigma) ** 2)
        gy = torch.exp(-0.5 * ((self.centres[None, :] - action[:, 1:2]) / sigma) ** 2)
        return (gy[:, :, None] * gx[:, None, :])[:, None]

    def forward(self, context: Tensor, action: Tensor, prev_action: Tensor) -> Tensor:
        """context (B, K, Z, g, g); actions (B, 2) in action units -> next latent (B, Z, g, g)."""
        b = context.shape[0]
        scale = 2.0 / self.cfg.action_scale
        a = torch.cat([action * scale - 1, prev_action * scale - 1], dim=1)
        film = self.film(a).view(b, len(self.blocks), 2, -1, 1, 1)
        h = self.inp(torch.cat([context.flatten(1, 2), self.bump(action)], dim=1))
        for i, block in enumerate(self.blocks):
            h = block(F.gelu(h), film[:, i, 0], film[:, i, 1])
        return (context[:, -1] + self.out(F.gelu(h))).clamp(-1.0, 1.0)


class WorldModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.dynamics = Dynamics(cfg)
        self.decoder = Decoder(cfg)

    @staticmethod
    def to_input(frames: Tensor) -> Tensor:
        """(..., H, W, 3) uint8 -> (..., 3, H, W) float in [0, 1], contiguous.

        Contiguous on purpose: a channels-last input makes the convs pick other kernels, whose
        results differ in the last bit, and a restored session must compute exactly what the
        original did.
        """
        return (frames.movedim(-1, -3).float() / 255.0).contiguous()

    @staticmethod
    def to_frames(pixels: Tensor) -> Tensor:
        """(..., 3, H, W) float -> (..., H, W, 3) uint8."""
        return (pixels.clamp(0, 1) * 255.0).round().to(torch.uint8).movedim(-3, -1)

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def step(self, context: Tensor, action: Tensor, prev_action: Tensor, noise: Tensor | None = None) -> Tensor:
        z = self.dynamics(context, action, prev_action)
        return z if noise is None else (z + noise).clamp(-1.0, 1.0)

    def rollout(self, context: Tensor, actions: Tensor, prev_action: Tensor) -> Tensor:
        """Open loop: context (B, K, Z, g, g), actions (B, T, 2) -> latents (B, T, Z, g, g)."""
        out = []
        for t in range(actions.shape[1]):
            z = self.step(context, actions[:, t], prev_action)
            out.append(z)
            context = torch.cat([context[:, 1:], z[:, None]], dim=1)
            prev_action = actions[:, t]
        return torch.stack(out, dim=1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
