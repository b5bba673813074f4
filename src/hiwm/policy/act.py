"""ACT (Zhao et al. 2023), small: a CVAE transformer that predicts chunks of actions.

Training: a transformer encoder reads [CLS, state, action chunk] and gives the posterior of a
style latent z; the main encoder reads [z, state, image tokens], a decoder with one learned
query per chunk step cross-attends to it. Loss: masked L1 on the chunk + ``kl_weight`` KL.
Inference: z = 0; the runtime averages overlapping chunks (temporal ensembling).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hiwm.policy.encoder import ConvBackbone, center_crop, random_crop
from hiwm.policy.normalize import make_normalizer


@dataclass
class ACTConfig:
    image_size: int = 48
    crop: int = 44
    n_obs_steps: int = 1
    horizon: int = 16  # chunk size
    n_action_steps: int = 1  # rows executed per query; 1 with temporal ensembling
    temporal_ensemble: float = 0.01  # ACT's m in w_i = exp(-m i), oldest first; < 0 disables ensembling
    state_dim: int = 2
    action_dim: int = 2
    channels: tuple[int, ...] = (32, 64, 128)
    dim: int = 128
    heads: int = 4
    ff_dim: int = 512
    enc_layers: int = 2
    dec_layers: int = 2
    vae_layers: int = 2
    latent_dim: int = 32
    dropout: float = 0.1
    kl_weight: float = 10.0
    normalization: str = "min_max"

    def __post_init__(self) -> None:
        self.channels = tuple(self.channels)
        if self.n_obs_steps != 1:
            raise ValueError("ACT conditions on the current observation only (n_obs_steps 1)")
        if not 1 <= self.n_action_steps <= self.horizon:
            raise ValueError("n_action_steps must be in [1, horizon]")
        if self.temporal_ensemble >= 0 and self.n_action_steps != 1:
            raise ValueError("temporal ensembling queries every step: set n_action_steps 1 or temporal_ensemble -1")

    @property
    def action_start(self) -> int:
        return 0


def encoder(cfg: ACTConfig, layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, cfg.ff_dim, cfg.dropout, batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class ACTPolicy(nn.Module):
    backbone_name = "act"

    def __init__(self, cfg: ACTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.state_norm = make_normalizer(cfg.normalization, cfg.state_dim)
        self.action_norm = make_normalizer(cfg.normalization, cfg.action_dim)
        # posterior q(z | state, actions)
        self.vae_cls = nn.Parameter(torch.zeros(1, 1, d))
        self.vae_state = nn.Linear(cfg.state_dim, d)
        self.vae_action = nn.Linear(cfg.action_dim, d)
        self.vae_pos = nn.Parameter(torch.randn(1, cfg.horizon + 2, d) * 0.02)
        self.vae_encoder = encoder(cfg, cfg.vae_layers)
        self.vae_out = nn.Linear(d, 2 * cfg.latent_dim)
        # policy
        self.backbone = ConvBackbone(cfg.channels)
        self.image_proj = nn.Conv2d(self.backbone.out_channels, d, 1)
        with torch.no_grad():
            tokens = self.backbone(torch.zeros(1, 3, cfg.crop, cfg.crop)).shape[-2:].numel()
        self.latent_proj = nn.Linear(cfg.latent_dim, d)
        self.state_proj = nn.Linear(cfg.state_dim, d)
        self.enc_pos = nn.Parameter(torch.randn(1, tokens + 2, d) * 0.02)
        self.encoder = encoder(cfg, cfg.enc_layers)
        layer = nn.TransformerDecoderLayer(d, cfg.heads, cfg.ff_dim, cfg.dropout, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, cfg.dec_layers)
        self.queries = nn.Parameter(torch.randn(1, cfg.horizon, d) * 0.02)
        self.head = nn.Linear(d, cfg.action_dim)

    def posterior(self, state: torch.Tensor, actions: torch.Tensor, pad: torch.Tensor):
        b = state.shape[0]
        tokens = torch.cat(
            [self.vae_cls.expand(b, -1, -1), self.vae_state(state)[:, None], self.vae_action(actions)], 1
        )
        mask = torch.cat([torch.zeros(b, 2, dtype=torch.bool, device=pad.device), pad], 1)
        out = self.vae_encoder(tokens + self.vae_pos, src_key_padding_mask=mask)
        return self.vae_out(out[:, 0]).chunk(2, -1)

    def decode(self, images: torch.Tensor, state: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255 if images.dtype == torch.uint8 else images
        x = random_crop(x, self.cfg.crop) if self.training else center_crop(x, self.cfg.crop)
        img = self.image_proj(self.backbone(x)).flatten(2).transpose(1, 2)  # (B, tokens, d)
        tokens = torch.cat([self.latent_proj(z)[:, None], self.state_proj(state)[:, None], img], 1)
        memory = self.encoder(tokens + self.enc_pos)
        out = self.decoder(self.queries.expand(state.shape[0], -1, -1), memory)
        return self.head(out)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        state = self.state_norm(batch["state"][:, -1])
        actions = self.action_norm(batch["action"])
        pad = batch["action_pad"]
        mu, logvar = self.posterior(state, actions, pad)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
        pred = self.decode(batch["image"][:, -1], state, z)
        valid = (~pad).float().unsqueeze(-1)
        l1 = (F.l1_loss(pred, actions, reduction="none") * valid).sum((1, 2)) / (valid.sum((1, 2)) * 2).clamp_min(1)
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(-1)
        return l1 + self.cfg.kl_weight * kl

    @torch.inference_mode()
    def predict(self, images: torch.Tensor, states: torch.Tensor, generator: torch.Generator | None = None):
        """(B, 1, 3, S, S), (B, 1, state_dim) -> (B, horizon, action_dim) in raw units (z = prior mean)."""
        state = self.state_norm(states[:, -1])
        z = torch.zeros(state.shape[0], self.cfg.latent_dim, device=state.device)
        return self.action_norm.inverse(self.decode(images[:, -1], state, z))
