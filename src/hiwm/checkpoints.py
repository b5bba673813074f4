"""Tensor files of checkpoints, for every model: safetensors only (no pickle), written atomically.

A checkpoint is a folder of safetensors files plus JSON; the model packages (``hiwm.policy``,
``hiwm.world_model``) decide what goes in it and share these primitives. Every file records, in
its safetensors metadata, a SHA-256 digest of its tensors (names, dtypes, shapes and bytes) taken
at save time; loading recomputes it, so flipped bits are refused instead of silently loaded.
Files from before digests were recorded load without the check.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

DIGEST_KEY = "hiwm.sha256"  # safetensors metadata entry holding the digest of the file's tensors
T = TypeVar("T")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, foreign, corrupt or does not fit its config; the message names the file."""


def state_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """A module's state as contiguous CPU tensors, ready for safetensors."""
    return {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file atomically (a crash leaves the old file or the new one, never half
    of one), with the digest of its tensors in the metadata."""
    tmp = path.with_name(f".tmp-{path.name}")
    save_file(tensors, str(tmp), metadata={**(metadata or {}), DIGEST_KEY: tensors_digest(tensors)})
    os.replace(tmp, path)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; CheckpointError if it is missing, unreadable or does not
    match the digest recorded when it was saved."""
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as f:
            recorded = (f.metadata() or {}).get(DIGEST_KEY)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{path}: unreadable safetensors ({exc})") from exc
    if recorded is not None and tensors_digest(tensors) != recorded:
        raise CheckpointError(f"{path}: damaged (its tensors do not match the digest recorded when it was saved)")
    return tensors


def build_from_config(build: Callable[[], T], source: Path) -> T:
    """``build()`` (a model from a checkpoint's config); a config whose values the model cannot
    take (wrong types, impossible sizes) is a CheckpointError naming ``source``."""
    try:
        return build()
    except CheckpointError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, RuntimeError) as exc:
        raise CheckpointError(f"{source}: invalid config ({type(exc).__name__}: {exc})") from exc


def load_weights(module: nn.Module, path: Path) -> None:
    """Load a safetensors file into ``module``; CheckpointError when the weights do not fit its config."""
    tensors = load_tensors(path)
    try:
        module.load_state_dict(tensors)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the config ({exc})") from exc
