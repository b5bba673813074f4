"""Checkpoints without pickle: safetensors for weights (and optimiser state), JSON for everything else.

A checkpoint directory holds ``config.json`` (model, train and probe configs, step, metrics),
``model.safetensors``, optionally ``probe.safetensors`` and, for resuming, ``optimizer.safetensors``
(every tensor of the optimiser's state dict, flattened to ``state.<param>.<key>``; its scalar
hyper-parameters go to ``config.json``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hiwm import checkpoints
from hiwm.checkpoints import CheckpointError, load_tensors, load_weights, save_tensors, state_tensors
from hiwm.files import atomic_write_json
from hiwm.world_model.config import ModelConfig, ProbeConfig, WorldModelTrainConfig, from_dict, to_dict

FORMAT = "hiwm.world_model/1"
CONFIG = "config.json"
MODEL = "model.safetensors"
PROBE = "probe.safetensors"
OPTIMIZER = "optimizer.safetensors"


@dataclass
class Checkpoint:
    model: ModelConfig
    train: WorldModelTrainConfig = field(default_factory=WorldModelTrainConfig)
    probe: ProbeConfig | None = None
    step: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimiser state dict into tensors (safetensors) and a JSON-able rest."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"state.{pid}.{key}"] = value.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], rest: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    for pid, values in rest.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(values)
    opt.load_state_dict({"state": state, "param_groups": rest["param_groups"]})


def save(
    out: str | Path,
    ckpt: Checkpoint,
    model: nn.Module,
    probe: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> Path:
    """Write (or overwrite) a checkpoint directory; the config is written last, atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    digests = {MODEL: save_tensors(out / MODEL, state_tensors(model), {"format": FORMAT})}
    if probe is not None:
        digests[PROBE] = save_tensors(out / PROBE, state_tensors(probe), {"format": FORMAT})
    doc: dict[str, Any] = {
        "format": FORMAT,
        "model": to_dict(ckpt.model),
        "train": to_dict(ckpt.train),
        "probe": to_dict(ckpt.probe) if ckpt.probe is not None else None,
        "step": ckpt.step,
        "metrics": ckpt.metrics,
    }
    if optimizer is not None:
        tensors, rest = optimizer_tensors(optimizer)
        digests[OPTIMIZER] = save_tensors(out / OPTIMIZER, tensors, {"format": FORMAT})
        doc["optimizer"] = rest
    atomic_write_json(out / CONFIG, {**doc, checkpoints.DIGESTS: digests})
    return out


def read_config(path: str | Path) -> tuple[Checkpoint, dict]:
    """The checkpoint's configs and its raw JSON document."""
    path = Path(path)
    try:
        doc = json.loads((path / CONFIG).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no {CONFIG}; not a world-model checkpoint") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path / CONFIG}: unreadable ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise CheckpointError(f"{path}: format {found!r}, expected {FORMAT!r}")
    try:
        ckpt = Checkpoint(
            model=from_dict(ModelConfig, doc["model"]),
            train=from_dict(WorldModelTrainConfig, doc.get("train") or {}),
            probe=from_dict(ProbeConfig, doc["probe"]) if doc.get("probe") else None,
            step=int(doc.get("step", 0)),
            metrics=dict(doc.get("metrics") or {}),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path / CONFIG}: invalid config ({exc})") from exc
    return ckpt, doc


def digest(doc: dict, path: Path, name: str) -> str | None:
    """The digest ``config.json`` records for tensor file ``name`` (None in older checkpoints)."""
    return checkpoints.recorded_digest(doc, name, Path(path) / CONFIG)


def load(
    path: str | Path, device: str | torch.device = "cpu", with_probe: bool = True
) -> tuple[Checkpoint, nn.Module, nn.Module | None]:
    """(configs, world model in eval mode, state probe or None) from a checkpoint directory."""
    from hiwm.world_model.model import WorldModel
    from hiwm.world_model.probe import StateProbe

    path = Path(path)
    ckpt, doc = read_config(path)
    model = checkpoints.build_from_config(lambda: WorldModel(ckpt.model), path / CONFIG)
    load_weights(model, path / MODEL, digest(doc, path, MODEL))
    probe = None
    if with_probe and ckpt.probe is not None and (path / PROBE).exists():
        probe = checkpoints.build_from_config(lambda: StateProbe(ckpt.probe), path / CONFIG)
        load_weights(probe, path / PROBE, digest(doc, path, PROBE))
        probe = probe.to(device).eval()
    return ckpt, model.to(device).eval(), probe


def load_optimizer_state(path: str | Path, optimizer: torch.optim.Optimizer) -> bool:
    """Restore an optimiser saved with the checkpoint; False if the checkpoint has none."""
    path = Path(path)
    _, doc = read_config(path)
    if "optimizer" not in doc or not (path / OPTIMIZER).exists():
        return False
    tensors = load_tensors(path / OPTIMIZER, digest(doc, path, OPTIMIZER))
    load_optimizer(optimizer, tensors, doc["optimizer"])
    return True
