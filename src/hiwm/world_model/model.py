"""A compact action-conditioned world model: conv encoder -> latent dynamics -> pixel-shuffle decoder.

Each camera's frames (e.g. one 96x96 camera seen from above) are encoded once into a small latent grid
(16 x H/8 x W/8, values in [-1, 1]) by one shared encoder. The dynamics sees each camera's
last ``context`` latents; the action, the previous action and the proprio state (normalised
by their limits) go through an MLP whose embedding scales and shifts (FiLM) every residual
block. For an action that is a point in the image (a target on a table seen from above) a Gaussian bump
on the first camera's grid where the target is lets a conv net act locally
(``action_conditioning="bump"``); other actions (joint positions, end-effector deltas) add a
learned spatial map of the embedding instead (``"mlp"``). Several cameras share the residual
blocks and exchange a pooled summary; a head predicts the next proprio from the pooled
features. The next latent is a residual of the newest one. Only the dynamics and the decoder
run per step, so a step stays a few tens of MFLOPs; nothing runs at full resolution except a
pixel shuffle. Encoder and decoder are also trained as an autoencoder on real frames.
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
    """Latents (B, Z, h, w) of camera ``camera`` -> frames (B, 3, 8h, 8w), roughly in [0, 1] (clamp for display)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c1, c2, c3 = cfg.dec_channels
        self.inp = nn.Conv2d(cfg.latent_channels, c1, 3, padding=1)
        self.block = ResBlock(c1)
        self.up1 = nn.Conv2d(c1, 4 * c2, 3, padding=1)
        self.up2 = nn.Conv2d(c2, 4 * c3, 3, padding=1)
        self.up3 = nn.Conv2d(c3, 4 * 3, 3, padding=1)
        # a fixed scene (a table and its goal, an arm's bench) never moves: a learned background
        # image per camera carries it, so the convs only draw what moves (training starts it at the
        # median frame); the first camera's keeps its first name so older checkpoints load
        (_, h, w), *more = cfg.camera_list
        self.background = nn.Parameter(torch.full((1, 3, h, w), 0.5))
        self.more_backgrounds = nn.ParameterList(nn.Parameter(torch.full((1, 3, h, w), 0.5)) for _, h, w in more)

    def backgrounds(self) -> list[nn.Parameter]:
        return [self.background, *self.more_backgrounds]

    def forward(self, z: Tensor, camera: int = 0) -> Tensor:
        h = self.block(F.gelu(self.inp(z)))
        h = F.gelu(F.pixel_shuffle(self.up1(F.gelu(h)), 2))
        h = F.gelu(F.pixel_shuffle(self.up2(h), 2))
        return F.pixel_shuffle(self.up3(h), 2) + self.backgrounds()[camera]


class Dynamics(nn.Module):
    """(each camera's context latents, action, previous action, proprio) -> next latents, next proprio."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c, z, n = cfg.dyn_channels, cfg.latent_channels, len(cfg.camera_list)
        self.bumped = cfg.action_conditioning == "bump"
        extra = 1 if self.bumped else cfg.action_map_channels
        self.inp = nn.Conv2d(cfg.context * z + extra, c, 3, padding=1)
        cond = 2 * cfg.action_dim + cfg.proprio_dim
        self.film = nn.Sequential(
            nn.Linear(cond, cfg.cond_hidden), nn.GELU(), nn.Linear(cfg.cond_hidden, 2 * c * cfg.dyn_blocks * n)
        )
        nn.init.zeros_(self.film[-1].weight)
        nn.init.zeros_(self.film[-1].bias)
        self.blocks = nn.ModuleList(ResBlock(c) for _ in range(cfg.dyn_blocks))
        self.out = nn.Conv2d(c, z, 3, padding=1)
        if not self.bumped and cfg.action_map_channels:  # where in each image the action acts, learned
            self.maps = nn.ModuleList(nn.Linear(cfg.cond_hidden, cfg.action_map_channels * h * w) for h, w in cfg.grids)
        if n > 1:  # the cameras see one scene: each one's pooled features shift every camera's
            self.mix = nn.Linear(n * c, c)
            nn.init.zeros_(self.mix.weight)
            nn.init.zeros_(self.mix.bias)
        if cfg.proprio_dim:  # the next proprio, as a residual of the current one (normalised units)
            self.proprio_head = nn.Sequential(
                nn.Linear(n * c + cfg.cond_hidden, cfg.cond_hidden),
                nn.GELU(),
                nn.Linear(cfg.cond_hidden, cfg.proprio_dim),
            )
            nn.init.zeros_(self.proprio_head[-1].weight)
            nn.init.zeros_(self.proprio_head[-1].bias)
        low, high = (torch.tensor(v, dtype=torch.float32) for v in (cfg.low, cfg.high))
        self.register_buffer("action_low", low, persistent=False)
        self.register_buffer("action_gain", 2.0 / (high - low), persistent=False)
        p_low, p_high = (torch.tensor(v, dtype=torch.float32) for v in cfg.proprio_limits)
        self.register_buffer("proprio_low", p_low, persistent=False)
        self.register_buffer("proprio_gain", 2.0 / (p_high - p_low), persistent=False)
        if self.bumped:
            # cell centres of the first camera's grid in action units (x -> columns, y -> rows), for the bump
            gh, gw = cfg.grids[0]
            span = high[:2] - low[:2]
            self.register_buffer(
                "centres_x", (torch.arange(gw, dtype=torch.float32) + 0.5) / gw * span[0] + low[0], persistent=False
            )
            self.register_buffer(
                "centres_y", (torch.arange(gh, dtype=torch.float32) + 0.5) / gh * span[1] + low[1], persistent=False
            )
            self.sigma = (float(span[0]) / gw, float(span[1]) / gh)

    def bump(self, action: Tensor) -> Tensor:
        """(B, A) actions -> (B, 1, h, w) Gaussian at the target (x -> column, y -> row) on the first camera's grid."""
        gx = torch.exp(-0.5 * ((self.centres_x[None, :] - action[:, :1]) / self.sigma[0]) ** 2)
        gy = torch.exp(-0.5 * ((self.centres_y[None, :] - action[:, 1:2]) / self.sigma[1]) ** 2)
        return (gy[:, :, None] * gx[:, None, :])[:, None]

    def normalise_action(self, action: Tensor) -> Tensor:
        return (action - self.action_low) * self.action_gain - 1

    def normalise_proprio(self, proprio: Tensor) -> Tensor:
        return (proprio - self.proprio_low) * self.proprio_gain - 1

    def forward(
        self, contexts: list[Tensor], action: Tensor, prev_action: Tensor, proprio: Tensor | None = None
    ) -> tuple[list[Tensor], Tensor | None]:
        """contexts: per camera (B, K, Z, h, w); actions (B, A) and proprio (B, P) in their own units ->
        next latents per camera (B, Z, h, w) and the next proprio (B, P), or None without proprio."""
        b, n = action.shape[0], len(contexts)
        parts = [self.normalise_action(action), self.normalise_action(prev_action)]
        if self.cfg.proprio_dim:
            if proprio is None:
                raise ValueError(f"this model needs proprio ({self.cfg.proprio_dim} values)")
            parts.append(self.normalise_proprio(proprio))
        embedding = F.gelu(self.film[0](torch.cat(parts, dim=1)))
        film = self.film[2](embedding).view(b, len(self.blocks), 2, n, -1, 1, 1)
        hs = []
        for cam, context in enumerate(contexts):
            if self.bumped:
                extra = self.bump(action) if cam == 0 else context.new_zeros((b, 1, *context.shape[-2:]))
                hs.append(self.inp(torch.cat([context.flatten(1, 2), extra], dim=1)))
            elif self.cfg.action_map_channels:
                extra = self.maps[cam](embedding).view(b, -1, *context.shape[-2:])
                hs.append(self.inp(torch.cat([context.flatten(1, 2), extra], dim=1)))
            else:
                hs.append(self.inp(context.flatten(1, 2)))
        if n > 1:
            shared = self.mix(torch.cat([h.mean(dim=(2, 3)) for h in hs], dim=1))[:, :, None, None]
            hs = [h + shared for h in hs]
        for i, block in enumerate(self.blocks):
            hs = [block(F.gelu(h), film[:, i, 0, cam], film[:, i, 1, cam]) for cam, h in enumerate(hs)]
        latents = [(ctx[:, -1] + self.out(F.gelu(h))).clamp(-1.0, 1.0) for ctx, h in zip(contexts, hs, strict=True)]
        next_proprio = None
        if self.cfg.proprio_dim:
            pooled = torch.cat([*(F.gelu(h).mean(dim=(2, 3)) for h in hs), embedding], dim=1)
            delta = self.proprio_head(pooled)
            next_proprio = proprio + delta / self.proprio_gain  # the step, predicted in normalised units
        return latents, next_proprio


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

    def decode(self, z: Tensor, camera: int = 0) -> Tensor:
        return self.decoder(z, camera)

    def step_all(
        self,
        contexts: list[Tensor],
        action: Tensor,
        prev_action: Tensor,
        proprio: Tensor | None = None,
        noise: list[Tensor] | None = None,
    ) -> tuple[list[Tensor], Tensor | None]:
        """One step of every camera: per camera (B, K, Z, h, w) -> per camera (B, Z, h, w), next proprio."""
        zs, p = self.dynamics(contexts, action, prev_action, proprio)
        if noise is not None:
            zs = [(z + e).clamp(-1.0, 1.0) for z, e in zip(zs, noise, strict=True)]
        return zs, p

    def step(self, context: Tensor, action: Tensor, prev_action: Tensor, noise: Tensor | None = None) -> Tensor:
        """One camera, no proprio: context (B, K, Z, h, w) -> next latent (B, Z, h, w)."""
        return self.step_all([context], action, prev_action, None, None if noise is None else [noise])[0][0]

    def rollout_all(
        self, contexts: list[Tensor], actions: Tensor, prev_action: Tensor, proprio: Tensor | None = None
    ) -> tuple[list[Tensor], Tensor | None]:
        """Open loop from the cameras' contexts and the current proprio, actions (B, T, A) -> per camera
        latents (B, T, Z, h, w) and predicted proprio (B, T, P) (None without proprio)."""
        out: list[list[Tensor]] = [[] for _ in contexts]
        props = []
        for t in range(actions.shape[1]):
            zs, proprio = self.step_all(contexts, actions[:, t], prev_action, proprio)
            for cam, z in enumerate(zs):
                out[cam].append(z)
            contexts = [torch.cat([c[:, 1:], z[:, None]], dim=1) for c, z in zip(contexts, zs, strict=True)]
            prev_action = actions[:, t]
            props.append(proprio)
        stacked = [torch.stack(o, dim=1) for o in out]
        return stacked, (torch.stack(props, dim=1) if self.cfg.proprio_dim else None)

    def rollout(self, context: Tensor, actions: Tensor, prev_action: Tensor) -> Tensor:
        """Open loop, one camera, no proprio: context (B, K, Z, g, g), actions (B, T, A) -> latents (B, T, Z, g, g)."""
        return self.rollout_all([context], actions, prev_action)[0][0]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
