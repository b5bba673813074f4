"""The action-conditioned world model: model, checkpoints, inference sessions, state probe, training."""

from hiwm.world_model.config import ModelConfig, ProbeConfig, TrainConfig
from hiwm.world_model.model import WorldModel

__all__ = ["ModelConfig", "ProbeConfig", "TrainConfig", "WorldModel"]
