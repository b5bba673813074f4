"""Train a policy: mixed datasets, weighted loss, validation on held-out episodes, EMA, resumable.

Single process by default; under ``torchrun`` (WORLD_SIZE set) each rank draws its own batches and
DDP averages the gradients; rank 0 validates and writes checkpoints. CUDA with bf16 autocast when
available, else CPU float32.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from hiwm.data import LeRobotDataset
from hiwm.policy.checkpoint import TRAIN_STATE, build_model, load_train_state, save_checkpoint, task_model_config
from hiwm.policy.data import FrameStore, MixedSampler, action_offsets, gather, load_dataset, parse_data_spec
from hiwm.progress import BudgetBar
from hiwm.tasks import DEFAULT_TASK, get_task


@dataclass
class TrainConfig:
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


def _distributed() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank() if world > 1 else 0), world, int(os.environ.get("LOCAL_RANK", "0"))


def _lr_factor(step: int, cfg: TrainConfig, minutes: float = 0.0) -> float:
    """Warmup, then cosine decay over the steps or the time budget, whichever runs out first."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    if cfg.max_minutes > 0:
        progress = max(progress, minutes / cfg.max_minutes)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def validate(model: torch.nn.Module, store: FrameStore, cfg: TrainConfig, device: torch.device) -> float:
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


def train(cfg: TrainConfig) -> Path:
    """Run training; returns the checkpoint folder."""
    if not cfg.data:
        raise ValueError("no training data: give at least one dataset")
    rank, world, local = _distributed()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cuda = torch.cuda.is_available() and cfg.device in ("auto", "cuda")
    device = torch.device(f"cuda:{local}" if cuda else "cpu")
    torch.manual_seed(cfg.seed + rank)
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
    sampler = MixedSampler(trains, [r for _, r in specs], seed=cfg.seed + 1000 * rank)

    ema = copy.deepcopy(model).eval() if cfg.ema > 0 else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step = 0
    if cfg.resume and (out / TRAIN_STATE).exists():
        doc = load_train_state(out, model, optimizer)
        step = int(doc.get("step", 0))
        if ema is not None:
            from hiwm.policy.checkpoint import load_model

            ema.load_state_dict(load_model(out, device).state_dict())
    net = torch.nn.parallel.DistributedDataParallel(model, [local] if cuda else None) if world > 1 else model

    meta = {
        "data": [
            {"path": str(Path(p).resolve()), "ratio": r, "train_episodes": t.episodes, "train_frames": len(t)}
            for (p, r), t in zip(specs, trains, strict=True)
        ],
        "val_episodes": val.episodes if val else 0,
    }
    train_doc = {**dataclasses.asdict(cfg), **meta}
    log = out / "log.jsonl"
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    last_val = None
    bar = BudgetBar(f"train {cfg.backbone}", cfg.steps, cfg.max_minutes, initial=step, disable=rank != 0)
    net.train()
    while step < cfg.steps:
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * _lr_factor(step, cfg, bar.elapsed_minutes)
        batch = {
            k: v.to(device, non_blocking=True)
            for k, v in sampler.batch(cfg.batch_size, mc.n_obs_steps, mc.horizon, mc.action_start).items()
        }
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            per_sample = net(batch).float()
        w = batch["weight"]
        loss = (per_sample * w).sum() / w.sum().clamp_min(1e-8)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        step += 1
        if ema is not None:
            decay = min(cfg.ema, (1 + step) / (10 + step))
            with torch.no_grad():
                for e, p in zip(ema.state_dict().values(), model.state_dict().values(), strict=True):
                    e.copy_(e * decay + p * (1 - decay)) if e.is_floating_point() else e.copy_(p)
        out_of_time = bar.out_of_time()
        if world > 1:  # every rank stops at the same step
            flag = torch.tensor(float(out_of_time), device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            out_of_time = bool(flag.item())
        done = step >= cfg.steps or out_of_time
        if rank == 0:
            if step % cfg.val_every == 0 or done:
                inference = ema if ema is not None else model
                last_val = validate(inference, val, cfg, device) if val is not None else None
                record = {
                    "step": step,
                    "loss": loss.item(),
                    "val_loss": last_val,
                    "lr": optimizer.param_groups[0]["lr"],
                    "minutes": bar.elapsed_minutes,
                }
                with log.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                save_checkpoint(
                    out,
                    inference,
                    train_doc,
                    raw=model,
                    optimizer=optimizer,
                    extra={"step": step, "val_loss": last_val},
                )
            bar.update(step, loss=loss.item(), val=last_val)
        if done:
            break
    bar.close()
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return out


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
