"""Policies: Diffusion Policy and ACT, their training and evaluation, and the seam for outside policies."""

from hiwm.policy.checkpoint import BACKBONES, CheckpointError, build_model, load_model, save_checkpoint
from hiwm.policy.runtime import ModelPolicy, Policy, check_observation, load_policy

__all__ = [
    "BACKBONES",
    "CheckpointError",
    "ModelPolicy",
    "Policy",
    "build_model",
    "check_observation",
    "load_model",
    "load_policy",
    "save_checkpoint",
]
