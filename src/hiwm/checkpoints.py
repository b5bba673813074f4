"""Tensor files of checkpoints, for every model: safetensors only (no pickle), written atomically.

A checkpoint is a folder of safetensors files plus JSON; the model packages (``hiwm.policy``,
``hiwm.world_model``) decide what goes in it and share these primitives.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from hiwm.files import replacing


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, foreign, corrupt or does not fit its config; the message names the file."""


def state_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """A module's state as contiguous CPU tensors, ready for safetensors."""
    return {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file atomically: a crash leaves the old file or the new one, never half of one."""
    with replacing(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; CheckpointError if it is missing or unreadable."""
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{path}: unreadable safetensors ({exc})") from exc


def load_weights(module: nn.Module, path: Path) -> None:
    """Load a safetensors file into ``module``; CheckpointError when the weights do not fit its config."""
    tensors = load_tensors(path)
    try:
        module.load_state_dict(tensors)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the config ({exc})") from exc
