"""Checkpoints: a folder of safetensors + JSON, never pickle.

  config.json              backbone, model config, training config, step
  model.safetensors        inference weights (EMA where training keeps one), normalizer stats included
  train_state.safetensors  raw weights, EMA and optimizer tensors (for resuming)
  train_state.json         optimizer hyper-parameters, step, sampler state

Every file is written under a temporary name and renamed, so a killed run leaves the last
complete checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hiwm import checkpoints
from hiwm.checkpoints import CheckpointError, load_tensors, load_weights, save_tensors, state_tensors
from hiwm.files import atomic_write_json
from hiwm.policy.act import ACTConfig, ACTPolicy
from hiwm.policy.data import camera_features
from hiwm.policy.diffusion import DiffusionConfig, DiffusionPolicy
from hiwm.tasks import Task

BACKBONES: dict[str, tuple[type, type]] = {
    "diffusion": (DiffusionConfig, DiffusionPolicy),
    "act": (ACTConfig, ACTPolicy),
}
CONFIG, MODEL, TRAIN_STATE, TRAIN_JSON = (
    "config.json",
    "model.safetensors",
    "train_state.safetensors",
    "train_state.json",
)


def build_model(backbone: str, overrides: dict[str, Any] | None = None) -> nn.Module:
    if backbone not in BACKBONES:
        raise CheckpointError(f"unknown backbone {backbone!r}; expected one of {sorted(BACKBONES)}")
    config_cls, model_cls = BACKBONES[backbone]
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = set(overrides or {}) - names
    if unknown:
        raise CheckpointError(f"unknown {backbone} config keys {sorted(unknown)}")
    return model_cls(config_cls(**(overrides or {})))


def task_model_config(
    backbone: str, task: Task, features: dict[str, dict], overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The model config of ``backbone`` for ``task`` on a dataset with ``features``: shapes (proprio,
    actions, cameras) from the dataset, the task's policy options, then ``overrides``."""
    if backbone not in BACKBONES:
        raise CheckpointError(f"unknown backbone {backbone!r}; expected one of {sorted(BACKBONES)}")
    dims = {}
    for key, want, what in (("observation.state", task.proprio_dim, "proprio"), ("action", task.action_dim, "action")):
        if key not in features:
            raise ValueError(f"the dataset has no {key!r} feature")
        dims[key] = int(features[key]["shape"][0])
        if dims[key] != want:
            raise ValueError(f"the dataset's {key} has {dims[key]} values, task {task.name!r} has {want} {what} dims")
    cameras = camera_features(features)
    if not cameras:
        raise ValueError("the dataset has no camera (observation.image or observation.images.*)")
    # the task's camera order where the dataset names them, then the rest as the dataset has them
    order = [c.name for c in task.cameras if c.name in cameras] + [c for c in cameras]
    config: dict[str, Any] = {
        "state_dim": dims["observation.state"],
        "action_dim": dims["action"],
        "cameras": list(dict.fromkeys(order)),
        "state_head": task.policy.state_head,
        "relative_actions": task.policy.relative_actions,
    }
    if not task.policy.state_head:
        config["conditioning"] = BACKBONES[backbone][0].IMAGE_CONDITIONING
    config.update(overrides or {})
    return config


def save_checkpoint(
    out: str | Path,
    model: nn.Module,
    train: dict[str, Any] | None = None,
    raw: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (inference weights) and, given ``raw``/``optimizer``, the state to resume from."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "format": "hiwm.policy/1",
        "backbone": model.backbone_name,
        "model": dataclasses.asdict(model.cfg),
        "train": train or {},
        **(extra or {}),
    }
    digests = {MODEL: save_tensors(out / MODEL, state_tensors(model))}
    if raw is not None and optimizer is not None:
        tensors = {f"model.{k}": v for k, v in state_tensors(raw).items()}
        opt = optimizer.state_dict()
        for pid, slots in opt["state"].items():
            for name, value in slots.items():
                tensors[f"optim.{pid}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
        digests[TRAIN_STATE] = save_tensors(out / TRAIN_STATE, tensors)
        doc = {"param_groups": opt["param_groups"], **(extra or {})}
        atomic_write_json(out / TRAIN_JSON, doc)
    atomic_write_json(out / CONFIG, {**config, checkpoints.DIGESTS: digests})
    return out


def read_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    file = path / CONFIG if path.is_dir() else path
    try:
        config = json.loads(file.read_text())
    except FileNotFoundError as exc:
        raise CheckpointError(f"{file}: no such checkpoint config") from exc
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{file}: unreadable checkpoint config ({exc})") from exc
    if not isinstance(config, dict) or "backbone" not in config or "model" not in config:
        raise CheckpointError(f"{file}: not a hiwm policy config (needs 'backbone' and 'model')")
    if not isinstance(config["backbone"], str) or not isinstance(config["model"], dict):
        raise CheckpointError(f"{file}: invalid config ('backbone' must be a name and 'model' a mapping)")
    return config


def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The inference model of a checkpoint folder (or its config.json), in eval mode."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    folder = path if path.is_dir() else path.parent
    config = read_config(folder)
    # checkpoints from before these options predicted absolutes and ensembled whole chunks
    config["model"].setdefault("relative_actions", False)
    if config["backbone"] == "act":
        config["model"].setdefault("ensemble_window", config["model"].get("horizon", BACKBONES["act"][0].horizon))
    model = checkpoints.build_from_config(lambda: build_model(config["backbone"], config["model"]), folder / CONFIG)
    load_weights(model, folder / MODEL, checkpoints.recorded_digest(config, MODEL, folder / CONFIG))
    return model.to(device).eval()


def load_train_state(path: str | Path, raw: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore raw weights and optimizer state in place; returns the JSON side (step, ...)."""
    folder = Path(path)
    digest = checkpoints.recorded_digest(read_config(folder), TRAIN_STATE, folder / CONFIG)
    try:
        tensors = load_tensors(folder / TRAIN_STATE, digest)
        doc = json.loads((folder / TRAIN_JSON).read_text())
    except Exception as exc:
        raise CheckpointError(f"{folder}: cannot resume ({exc})") from exc
    raw.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": doc["param_groups"]})
    return doc
