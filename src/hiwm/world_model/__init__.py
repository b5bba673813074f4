"""The action-conditioned world model: model, checkpoints, inference sessions, state probe, training.

Submodules load torch; import them where needed (``hiwm.world_model.session`` ...), so that
importing the package, or its torch-free ``config``, stays cheap for the command line.
"""

from __future__ import annotations

from typing import Any

from hiwm.world_model.config import ModelConfig, ProbeConfig, WorldModelTrainConfig

__all__ = ["ModelConfig", "ProbeConfig", "WorldModel", "WorldModelTrainConfig"]


def __getattr__(name: str) -> Any:
    if name == "WorldModel":
        from hiwm.world_model.model import WorldModel

        return WorldModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
