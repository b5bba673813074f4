"""Train a policy: mixed datasets, weighted loss, validation on held-out episodes, EMA, resumable.

The loop is :func:`hiwm.training.train_loop`: single process by default; under ``torchrun``
(WORLD_SIZE set) each rank draws its own batches and DDP averages the gradients; rank 0 validates and
writes checkpoints. CUDA with bf16 autocast when available (``device``), else CPU float32.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hiwm.data import LeRobotDataset
from hiwm.policy.checkpoint import TRAIN_STATE, build_model, load_train_state, save_checkpoint, task_model_config
from hiwm.policy.data import FrameStore, MixedSampler, action_offsets, gather, load_dataset, parse_data_spec
from hiwm.tasks import DEFAULT_TASK, get_task
from hiwm.training import Budget, Ranks, TrainStep, ranks_started, stop_ranks, train_loop


@dataclass
class PolicyTrainConfig:
    backbone: str = "diffusion"
    task: str = DEFAULT_TASK  # its policy options; the model's shapes come from the (first) dataset
    data: list[str] = field(default_factory=list)  # "path" or "path:ratio"
    out: str = "runs/policy"
    steps: int = 5000
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 1e-6
    warmup: int = 200
    grad_clip: float = 1.0
    ema: float = 0.995  # 0 disables; inference weights are the EMA's
    val_fraction: float = 0.1
    val_every: int = 250
    val_windows: int = 256
    intervention_weight: float = 1.0  # loss weight of frames a human corrected
    max_episodes: int | None = None  # per dataset: train on the first N episodes (limited demos)
    max_minutes: float = 0.0  # wall-clock budget; 0 = none (stops early, saves)
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 = torch's default
    device: str = "auto"
    model: dict[str, Any] = field(default_factory=dict)  # backbone config overrides
    init: str = ""  # start from this checkpoint's weights and normalisation (post-training)
    resume: bool = True


@torch.no_grad()
def validate(model: torch.nn.Module, store: FrameStore, cfg: PolicyTrainConfig, device: torch.device) -> float:
    """Mean loss over fixed windows of the held-out episodes (fixed noise seed, eval mode)."""
    mc = model.cfg
    idx = np.linspace(0, len(store) - 1, min(cfg.val_windows, len(store))).astype(int)
    was_training = model.training
    model.eval()
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(1234)
        total, n = 0.0, 0
        for start in range(0, len(idx), cfg.batch_size):
            batch = gather(store, idx[start : start + cfg.batch_size], mc.n_obs_steps, mc.horizon, mc.action_start)
            batch = {k: v.to(device) for k, v in batch.items()}
            total += float(model(batch).sum())
            n += len(batch["weight"])
    model.train(was_training)
    return total / max(n, 1)


@dataclass
class TrainedPolicy:
    out: Path  # the checkpoint folder (rank 0 writes it)
    model: torch.nn.Module  # this rank's trained weights (not the EMA)
    step: int  # the step this rank stopped at


def train(cfg: PolicyTrainConfig) -> TrainedPolicy:
    """Run training on this rank (every rank under torchrun); the checkpoint folder, this rank's
    model and step."""
    if not cfg.data:
        raise ValueError("no training data: give at least one dataset")
    with ranks_started(cfg.device) as ranks:
        return _train(cfg, ranks)


def _train(cfg: PolicyTrainConfig, ranks: Ranks) -> TrainedPolicy:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = ranks.device
    torch.manual_seed(cfg.seed + ranks.rank)
    out = Path(cfg.out)
    specs = [parse_data_spec(s) for s in cfg.data]
    task = get_task(cfg.task)

    if cfg.init:  # post-training: the base policy's weights and normalisation, its architecture
        from hiwm.policy.checkpoint import load_model, read_config

        if read_config(cfg.init)["backbone"] != cfg.backbone:
            raise ValueError(f"--init {cfg.init} is not a {cfg.backbone} checkpoint")
        model = load_model(cfg.init, device).train()
    else:
        features = LeRobotDataset(specs[0][0]).features
        model = build_model(cfg.backbone, task_model_config(cfg.backbone, task, features, cfg.model)).to(device)
    mc = model.cfg
    trains, vals = [], []
    for path, _ in specs:
        tr, va = load_dataset(
            path,
            mc.image_size,
            cfg.val_fraction,
            cfg.intervention_weight,
            cfg.seed,
            cfg.max_episodes,
            cameras=mc.cameras,
            state_targets=mc.state_head,
        )
        trains.append(tr)
        if va is not None:
            vals.append(va)
    if not cfg.init:
        model.state_norm.fit(np.concatenate([s.state for s in trains]))
        if mc.relative_actions:
            model.action_norm.fit(np.concatenate([action_offsets(s, mc.horizon, mc.action_start) for s in trains]))
        else:
            model.action_norm.fit(np.concatenate([s.action for s in trains]))
    val = _merge(vals) if vals else None
    sampler = MixedSampler(trains, [r for _, r in specs], seed=cfg.seed + 1000 * ranks.rank)

    ema = copy.deepcopy(model).eval() if cfg.ema > 0 and ranks.main else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step = 0
    if cfg.resume and (out / TRAIN_STATE).exists():
        doc = load_train_state(out, model, optimizer)
        step = int(doc.get("step", 0))
        if ema is not None:
            from hiwm.policy.checkpoint import load_model

            ema.load_state_dict(load_model(out, device).state_dict())

    meta = {
        "data": [
            {"path": str(Path(p).resolve()), "ratio": r, "train_episodes": t.episodes, "train_frames": len(t)}
            for (p, r), t in zip(specs, trains, strict=True)
        ],
        "val_episodes": val.episodes if val else 0,
    }
    train_doc = {**dataclasses.asdict(cfg), **meta}
    log = out / "log.jsonl"
    if ranks.main:
        out.mkdir(parents=True, exist_ok=True)

    def batch_loss() -> torch.Tensor:
        batch = sampler.batch(cfg.batch_size, mc.n_obs_steps, mc.horizon, mc.action_start)
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        w = batch["weight"]
        return (model(batch).float() * w).sum() / w.sum().clamp_min(1e-8)

    last_val: float | None = None

    def on_step(s: TrainStep) -> dict[str, Any]:
        nonlocal last_val
        if ema is not None:
            decay = min(cfg.ema, (1 + s.step) / (10 + s.step))
            with torch.no_grad():
                for e, p in zip(ema.state_dict().values(), model.state_dict().values(), strict=True):
                    e.copy_(e * decay + p * (1 - decay)) if e.is_floating_point() else e.copy_(p)
        if s.step % cfg.val_every == 0 or s.done:
            inference = ema if ema is not None else model
            last_val = validate(inference, val, cfg, device) if val is not None else None
            record = {"step": s.step, "loss": s.loss, "val_loss": last_val, "lr": s.lr, "minutes": s.minutes}
            with log.open("a") as f:
                f.write(json.dumps(record) + "\n")
            save_checkpoint(
                out, inference, train_doc, raw=model, optimizer=optimizer, extra={"step": s.step, "val_loss": last_val}
            )
        return {"val": last_val}

    budget = Budget(cfg.steps, cfg.max_minutes, cfg.lr, cfg.warmup, 0.0, cfg.grad_clip)
    name = f"train {cfg.backbone}"
    done = train_loop(name, model, batch_loss, optimizer, budget, ranks, start=step, on_step=on_step)
    stop_ranks(ranks)
    return TrainedPolicy(out, model, done.step)


def _merge(stores: list[FrameStore]) -> FrameStore:
    offsets = np.cumsum([0] + [len(s) for s in stores[:-1]])
    return FrameStore(
        image=np.concatenate([s.image for s in stores]),
        state=np.concatenate([s.state for s in stores]),
        action=np.concatenate([s.action for s in stores]),
        env_state=np.concatenate([s.env_state for s in stores]),
        weight=np.concatenate([s.weight for s in stores]),
        lo=np.concatenate([s.lo + o for s, o in zip(stores, offsets, strict=True)]),
        hi=np.concatenate([s.hi + o for s, o in zip(stores, offsets, strict=True)]),
        episodes=sum(s.episodes for s in stores),
    )
