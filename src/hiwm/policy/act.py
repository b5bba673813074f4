"""ACT (Zhao et al. 2023), small: a CVAE transformer that predicts chunks of actions.

Training: a transformer encoder reads [CLS, state, action chunk] and gives the posterior of a
style latent z; the main encoder reads [z, state, image tokens], a decoder with one learned
query per chunk step cross-attends to it. Loss: masked L1 on the chunk + ``kl_weight`` KL.
Inference: z = 0; the runtime averages overlapping chunks (temporal ensembling).

The main encoder's observation tokens are, by default (``conditioning="state"``), one token of
the task state the conv encoder's state head reads off the frame (e.g. where an object lies; see
``diffusion`` for why), or the conv feature maps' cells of every camera (``"image"``), as in the
original. Actions and proprio have any number of dimensions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hiwm.policy.encoder import STATE_DIM, ImageEncoder, conditioning_states, state_loss
from hiwm.policy.normalize import check_relative_actions, from_action_frame, make_normalizer, to_action_frame


@dataclass
class ACTConfig:
    image_size: int = 48
    crop: int = 48
    n_obs_steps: int = 1
    horizon: int = 16  # chunk size
    n_action_steps: int = 1  # rows executed per query; 1 with temporal ensembling
    temporal_ensemble: float = 0.01  # ACT's m in w_i = exp(-m i), oldest first; < 0 disables ensembling
    ensemble_window: int = 4  # steps of each chunk that enter the ensemble: older predictions lag (at 10 Hz)
    state_dim: int = 2  # proprio
    action_dim: int = 2
    cameras: tuple[str, ...] = ("image",)  # the observation's images, in this order
    channels: tuple[int, ...] = (16, 32, 64)
    dim: int = 64
    heads: int = 4
    ff_dim: int = 512
    enc_layers: int = 2
    dec_layers: int = 1
    vae_layers: int = 1
    latent_dim: int = 32
    dropout: float = 0.1
    kl_weight: float = 10.0
    conditioning: str = "state"  # "state": one token of the state read off the image; "image": feature-map tokens
    keypoints: int = 32  # of the encoder's state reading
    state_head: bool = True  # the encoder's auxiliary true-state head (a task option; "state" needs it)
    aux_weight: float = 1.0  # weight of the encoder's true-state loss (training only)
    image_batch: int = 16  # "state": samples per batch whose images train the encoder
    state_noise: float = 0.01  # "state": noise on true states standing in for read ones (normalised units,
    # about a trained encoder's error on positions: 0.008-0.014)
    normalization: str = "min_max"
    relative_actions: bool = True  # predict actions as offsets from the current agent state

    def __post_init__(self) -> None:
        self.channels, self.cameras = tuple(self.channels), tuple(self.cameras)
        if not self.cameras:
            raise ValueError("a policy needs at least one camera")
        if self.conditioning == "state" and not self.state_head:
            raise ValueError("conditioning 'state' reads the state head: set state_head or conditioning 'image'")
        check_relative_actions(self.relative_actions, self.state_dim, self.action_dim)
        if self.n_obs_steps != 1:
            raise ValueError("ACT conditions on the current observation only (n_obs_steps 1)")
        if not 1 <= self.n_action_steps <= self.horizon:
            raise ValueError("n_action_steps must be in [1, horizon]")
        if self.conditioning not in ("state", "image"):
            raise ValueError(f"conditioning must be 'state' or 'image', got {self.conditioning!r}")
        if not 1 <= self.ensemble_window <= self.horizon:
            raise ValueError("ensemble_window must be in [1, horizon]")
        if self.temporal_ensemble >= 0 and self.n_action_steps != 1:
            raise ValueError("temporal ensembling queries every step: set n_action_steps 1 or temporal_ensemble -1")

    @property
    def action_start(self) -> int:
        return 0

    #: The conditioning that needs no state head.
    IMAGE_CONDITIONING = "image"


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
        cams = len(cfg.cameras)
        self.encoder = ImageEncoder(cfg.channels, cfg.keypoints, cfg.crop, cameras=cams, state_head=cfg.state_head)
        if cfg.conditioning == "image":
            self.image_proj = nn.Conv2d(self.encoder.backbone.out_channels, d, 1)
            with torch.no_grad():
                tokens = cams * self.encoder.backbone(torch.zeros(1, 3, cfg.crop, cfg.crop)).shape[-2:].numel()
        else:
            self.read_proj = nn.Linear(STATE_DIM, d)
            tokens = 1
        self.latent_proj = nn.Linear(cfg.latent_dim, d)
        self.state_proj = nn.Linear(cfg.state_dim, d)
        self.enc_pos = nn.Parameter(torch.randn(1, tokens + 2, d) * 0.02)
        self.encoder_tf = encoder(cfg, cfg.enc_layers)
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

    def observe(self, images: torch.Tensor, targets: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, 3 K, S, S) images (and (B, 1, 6) true states in training, with the state head) ->
        observation tokens, encoder loss (B,)."""
        if self.cfg.conditioning == "state":
            cfg = self.cfg
            read, loss = conditioning_states(self.encoder, images, targets, cfg.image_batch, cfg.state_noise)
            return self.read_proj(read), loss
        b = images.shape[0]
        fmap = self.encoder.feature_map(images[:, -1])  # (B K, C, h, w)
        loss = images.new_zeros(b).float()
        if targets is not None and self.cfg.state_head:
            loss = state_loss(self.encoder.state(self.encoder.pool(fmap).reshape(b, -1)), targets[:, -1])
        return self.image_proj(fmap).flatten(2).transpose(1, 2).reshape(b, -1, self.cfg.dim), loss

    def decode(self, obs: torch.Tensor, state: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat([self.latent_proj(z)[:, None], self.state_proj(state)[:, None], obs], 1)
        memory = self.encoder_tf(tokens + self.enc_pos)
        out = self.decoder(self.queries.expand(state.shape[0], -1, -1), memory)
        return self.head(out)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        state = self.state_norm(batch["state"][:, -1])
        actions = self.action_norm(to_action_frame(batch["action"], batch["state"], self.cfg.relative_actions))
        pad = batch["action_pad"]
        mu, logvar = self.posterior(state, actions, pad)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
        obs, encoder_loss = self.observe(batch["image"], batch.get("aux_target"))
        pred = self.decode(obs, state, z)
        valid = (~pad).float().unsqueeze(-1)
        elements = (valid.sum((1, 2)) * self.cfg.action_dim).clamp_min(1)
        l1 = (F.l1_loss(pred, actions, reduction="none") * valid).sum((1, 2)) / elements
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(-1)
        return l1 + self.cfg.kl_weight * kl + self.cfg.aux_weight * encoder_loss

    @torch.inference_mode()
    def predict(self, images: torch.Tensor, states: torch.Tensor, generator: torch.Generator | None = None):
        """(B, 1, 3 K, S, S), (B, 1, state_dim) -> (B, horizon, action_dim) in raw units (z = prior mean)."""
        state = self.state_norm(states[:, -1])
        z = torch.zeros(state.shape[0], self.cfg.latent_dim, device=state.device)
        actions = self.action_norm.inverse(self.decode(self.observe(images, None)[0], state, z))
        return from_action_frame(actions, states, self.cfg.relative_actions)
