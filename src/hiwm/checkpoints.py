"""Tensor files of checkpoints, for every model: safetensors only (no pickle), written atomically.

A checkpoint is a folder of safetensors files plus JSON; the model packages (``hiwm.policy``,
``hiwm.world_model``) decide what goes in it and share these primitives. :func:`save_tensors`
returns the SHA-256 of the file it wrote; the packages record it in the checkpoint's
``config.json`` (``"digests": {file name: hex}``, written last) and hand it back to
:func:`load_tensors`, which refuses a file whose bytes no longer match (flipped bits, a file from
another checkpoint). Checkpoints from before digests were recorded load without the check.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import save_file
from torch import nn

from hiwm.files import replacing

DIGESTS = "digests"  # the config.json entry: {tensor file name: sha256 hex of its bytes}
T = TypeVar("T")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, foreign, corrupt or does not fit its config; the message names the file."""


def state_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """A module's state as contiguous CPU tensors, ready for safetensors."""
    return {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> str:
    """Write a safetensors file atomically (a crash leaves the old file or the new one, never half
    of one); returns the SHA-256 of its bytes, for the checkpoint's config to record."""
    with replacing(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    return digest


def recorded_digest(doc: dict[str, Any], name: str, source: Path) -> str | None:
    """The digest a checkpoint config records for tensor file ``name``; None for older checkpoints."""
    digests = doc.get(DIGESTS, {})
    if not isinstance(digests, dict) or not isinstance(digests.get(name, ""), str):
        raise CheckpointError(f"{source}: invalid config ('{DIGESTS}' must map file names to sha256 hex digests)")
    return digests.get(name)


def load_tensors(path: Path, digest: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; CheckpointError if it is missing, unreadable, or its bytes do
    not match ``digest`` (the SHA-256 recorded when it was saved)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: unreadable ({exc})") from exc
    if digest is not None and hashlib.sha256(data).hexdigest() != digest:
        raise CheckpointError(f"{path}: damaged (its bytes do not match the digest recorded when it was saved)")
    try:
        return load_bytes(data)
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{path}: unreadable safetensors ({exc})") from exc


def load_weights(module: nn.Module, path: Path, digest: str | None = None) -> None:
    """Load a safetensors file into ``module``; CheckpointError when it is damaged or the weights do
    not fit its config."""
    tensors = load_tensors(path, digest)
    try:
        module.load_state_dict(tensors)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the config ({exc})") from exc


def build_from_config(build: Callable[[], T], source: Path) -> T:
    """``build()`` (a model from a checkpoint's config); a config whose values the model cannot
    take (wrong types, impossible sizes) is a CheckpointError naming ``source``."""
    try:
        return build()
    except CheckpointError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, RuntimeError) as exc:
        raise CheckpointError(f"{source}: invalid config ({type(exc).__name__}: {exc})") from exc
