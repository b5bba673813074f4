"""Train the world model of a task (and then its state probe) on LeRobot datasets of that task.

``hiwm train world-model [--task NAME] --data DIR [DIR ...] --out OUT``: the model's interface
(actions, proprio, cameras) is the task's (:meth:`~hiwm.tasks.world.TaskWorld.model_interface`, the
cameras sized as the dataset records them) under any ``--model`` fields; episodes are split by episode into
train and held-out sets; every ``val_every`` steps the held-out episodes are rolled out open
loop from 2 real frames, driven by their recorded actions, and PSNR/SSIM are measured at the
horizons 1, 10 and 50. Checkpoints (safetensors + JSON, optimiser included) let a run resume
with ``--resume``. Every phase runs in :func:`hiwm.training.train_loop`: under torchrun
(``WORLD_SIZE`` set) each process trains on its own windows through DDP and all stop at the same
step; rank 0 validates and writes. CUDA and bf16 autocast are used when available.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from hiwm.tasks import DEFAULT_TASK, Task, get_task
from hiwm.training import Budget, Ranks, TrainStep, autocast, ranks_started, stop_ranks, train_loop
from hiwm.world_model import checkpoint as ckpt_io
from hiwm.world_model.config import ModelConfig, ProbeConfig, WorldModelTrainConfig, check_task_interface, preset
from hiwm.world_model.data import Episode, Windows, WindowSampler, image_key, load_episodes, split_episodes
from hiwm.world_model.metrics import psnr, ssim
from hiwm.world_model.model import WorldModel, count_parameters
from hiwm.world_model.probe import StateProbe, probe_loss, task_world

PHASES = ("autoencoder", "latent_dynamics")


def foreground(x: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Pixels away from the (learned) background, channel axis -3: the agent and the block."""
    return (x - background).abs().amax(dim=-3, keepdim=True) > 0.15


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, fg: torch.Tensor, fg_weight: float) -> torch.Tensor:
    return ((1.0 + fg_weight * fg.float()) * (pred.float() - target) ** 2).mean()


def window_loss(model: WorldModel, batch: Windows, cfg: WorldModelTrainConfig) -> dict:
    """Losses of one batch of windows: autoencoding of the context, open-loop prediction of the rest
    (every camera's frames, averaged over cameras, and the proprio where the model has it)."""
    k = model.cfg.context
    actions = batch.actions
    xs = [WorldModel.to_input(frames) for frames in batch.views]  # each (B, L, 3, H, W)
    b, length = xs[0].shape[:2]
    zs_real = [model.encode(x.flatten(0, 1)).unflatten(0, (b, length)) for x in xs]
    prev = actions[:, k - 2] if k >= 2 else actions[:, 0]
    proprio = batch.proprio if model.cfg.proprio_dim else None
    zs, pred_proprio = model.rollout_all(
        [z[:, :k] for z in zs_real],
        actions[:, k - 1 : length - 1],
        prev,
        None if proprio is None else proprio[:, k - 1],
    )
    pixels, aes, latents = [], [], []
    for cam, (x, z, zp) in enumerate(zip(xs, zs_real, zs, strict=True)):
        recon = model.decode(z[:, k - 1], cam)  # autoencoding of the newest context frame keeps the decoder honest
        pred = model.decode(zp.flatten(0, 1), cam).unflatten(0, (b, length - k))
        target = x[:, k:]
        # what moves is a few percent of the pixels but all that matters: pixels away from the
        # (learned, fixed) background and pixels that move are weighed up, or the model settles
        # on drawing the empty scene
        bg = model.decoder.backgrounds()[cam].detach()
        moved = (target - x[:, k - 1 : length - 1]).abs().amax(dim=2, keepdim=True) > 0.1
        pixels.append(weighted_mse(pred, target, foreground(target, bg) | moved, cfg.fg_weight))
        aes.append(weighted_mse(recon, x[:, k - 1], foreground(x[:, k - 1], bg), cfg.fg_weight))
        latents.append(F.mse_loss(zp.float(), z[:, k:].detach().float()))
    pixel, ae, latent = (torch.stack(terms).mean() for terms in (pixels, aes, latents))  # over cameras
    loss = pixel + ae + cfg.latent_weight * latent
    out = {"pixel": pixel.detach(), "ae": ae.detach(), "latent": latent.detach()}
    if proprio is not None:
        norm = model.dynamics.normalise_proprio
        out["proprio"] = F.mse_loss(norm(pred_proprio.float()), norm(proprio[:, k:].float()))
        loss = loss + cfg.proprio_weight * out["proprio"]
        out["proprio"] = out["proprio"].detach()
    return {"loss": loss, **out}


@torch.no_grad()
def open_loop(
    model: WorldModel,
    episodes: list[Episode],
    horizons: tuple[int, ...],
    windows: int,
    seed: int,
    device: torch.device,
    probe: StateProbe | None = None,
) -> dict[str, Any]:
    """PSNR/SSIM of open-loop predictions at each horizon, and of copying the last real frame; with a
    ``probe``, also how far from the recorded states it reads the first camera's predicted frames
    (the task world's :meth:`~hiwm.tasks.world.TaskWorld.state_errors`, e.g. ``agent_px@10``)."""
    k, h_max = model.cfg.context, max(horizons)
    eligible = [e for e in episodes if len(e.frames) >= k + h_max]
    if not eligible:
        return {"windows": 0}
    rng = np.random.default_rng(seed)
    picks = []
    for i in range(windows):
        ep = eligible[i % len(eligible)]
        picks.append((ep, int(rng.integers(0, len(ep.frames) - (k + h_max) + 1))))

    def stack(get: Any) -> np.ndarray:
        return np.stack([get(ep)[t : t + k + h_max] for ep, t in picks])

    xs = [
        WorldModel.to_input(torch.from_numpy(stack(lambda e, c=c: e.views[c])).to(device))
        for c in range(len(picks[0][0].views))
    ]
    a = torch.from_numpy(stack(lambda e: e.actions)).to(device)
    true_states = stack(lambda e: e.states)
    proprio = torch.from_numpy(stack(lambda e: e.proprio)).to(device) if model.cfg.proprio_dim else None
    n = len(picks)
    was_training = model.training
    model.eval()
    with autocast(device):
        ctx = [model.encode(x[:, :k].flatten(0, 1)).unflatten(0, (n, k)) for x in xs]
        prev = a[:, k - 2] if k >= 2 else a[:, 0]
        zs, pred_proprio = model.rollout_all(
            ctx, a[:, k - 1 : k - 1 + h_max], prev, None if proprio is None else proprio[:, k - 1]
        )
        out: dict[str, Any] = {"windows": n}

        def mean(metric: Any, pairs: Any) -> float:  # over windows, then cameras
            return float(torch.stack([metric(p, t).mean() for p, t in pairs]).mean())

        for h in horizons:
            preds = [model.decode(z[:, h - 1], cam).float() for cam, z in enumerate(zs)]
            targets = [x[:, k - 1 + h] for x in xs]
            out[f"psnr@{h}"] = mean(psnr, zip(preds, targets, strict=True))
            out[f"ssim@{h}"] = mean(ssim, zip(preds, targets, strict=True))
            out[f"copy_psnr@{h}"] = mean(psnr, zip((x[:, k - 1] for x in xs), targets, strict=True))
            if proprio is not None:  # mean absolute error in the proprio's own units
                target = proprio[:, k - 1 + h].float()
                out[f"proprio_mae@{h}"] = float((pred_proprio[:, h - 1].float() - target).abs().mean())
                out[f"copy_proprio_mae@{h}"] = float((proprio[:, k - 1].float() - target).abs().mean())
            if probe is not None and true_states.shape[-1] == probe.coding.state_dim:
                read = probe.predict(WorldModel.to_frames(preds[0]))
                errors = probe.world.state_errors(read, true_states[:, k - 1 + h])
                out.update({f"{name}@{h}": value for name, value in errors.items()})
    model.train(was_training)
    return out


def rollout_figure(model: WorldModel, ep: Episode, path: Path, device: torch.device, steps=(1, 5, 10, 25, 50)) -> None:
    """Real vs. open-loop predicted frames of one held-out episode, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = model.cfg.context
    steps = [s for s in steps if k - 1 + s < len(ep.frames)]
    if not steps:
        return
    a = torch.from_numpy(np.array(ep.actions[: k + max(steps)])).to(device)[None]
    proprio = torch.tensor(ep.proprio[k - 1 : k], device=device) if model.cfg.proprio_dim else None
    with torch.no_grad():
        ctx = [model.encode(WorldModel.to_input(torch.from_numpy(v[:k]).to(device)))[None] for v in ep.views]
        zs, _ = model.rollout_all(ctx, a[:, k - 1 : k - 1 + max(steps)], a[:, k - 2] if k >= 2 else a[:, 0], proprio)
        pred = WorldModel.to_frames(model.decode(zs[0][0]).float()).cpu().numpy()  # the first camera
    fig, axes = plt.subplots(2, len(steps), figsize=(2 * len(steps), 4.4), squeeze=False)
    for j, s in enumerate(steps):
        axes[0, j].imshow(ep.frames[k - 1 + s])
        axes[0, j].set_title(f"real t+{s}", fontsize=8)
        axes[1, j].imshow(pred[s - 1])
        axes[1, j].set_title(f"model t+{s}", fontsize=8)
        for ax in axes[:, j]:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train_probe(
    episodes: list[Episode], val: list[Episode], cfg: ProbeConfig, steps: int, seed: int, device: torch.device
) -> tuple[StateProbe, dict[str, float]]:
    """Fit the state probe on real frames; report its errors on held-out frames."""
    torch.manual_seed(seed)
    probe = StateProbe(cfg).to(device)
    opt = torch.optim.AdamW(probe.parameters(), lr=2e-3, weight_decay=1e-4)
    frames = np.concatenate([e.frames for e in episodes])
    targets = probe.coding.targets(np.concatenate([e.states for e in episodes]))
    rng = np.random.default_rng(seed)

    def batch_loss() -> torch.Tensor:
        idx = rng.integers(0, len(frames), size=64)
        x = WorldModel.to_input(torch.from_numpy(frames[idx]).to(device))
        return probe_loss(probe(x), torch.from_numpy(targets[idx]).to(device), probe.coding)

    train_loop("probe", probe, batch_loss, opt, Budget(steps, lr=2e-3), Ranks(device=device), leave=False, log_every=50)
    probe.eval()
    return probe, probe_errors(probe, val or episodes)


def fit_probe(
    episodes: list[Episode],
    val: list[Episode],
    probe_cfg: ProbeConfig,
    cfg: WorldModelTrainConfig,
    device: torch.device,
) -> tuple[StateProbe, dict]:
    """Train the probe, then fit its success threshold on fresh real episodes of its task's env and
    expert (``cfg.probe_calibration``)."""
    probe, errors = train_probe(episodes, val, probe_cfg, cfg.probe_steps, cfg.seed, device)
    if cfg.probe_calibration > 0:
        from hiwm.world_model.verdict import CALIBRATION_SEED, calibrate, real_episodes

        real = real_episodes(probe_cfg.image_size, cfg.probe_calibration, CALIBRATION_SEED, task=probe_cfg.task)
        errors["calibration"] = calibrate(probe, real)
    return probe, errors


def probe_errors(probe: StateProbe, episodes: list[Episode], limit: int = 4000) -> dict[str, float]:
    """How far the probe reads real frames from their recorded states (the task world's
    :meth:`~hiwm.tasks.world.TaskWorld.state_errors`, e.g. agent and block px, angle degrees)."""
    frames = np.concatenate([e.frames for e in episodes])[:limit]
    states = np.concatenate([e.states for e in episodes])[:limit]
    pred = np.concatenate([probe.predict(frames[i : i + 256]) for i in range(0, len(frames), 256)])
    return {"frames": len(frames), **probe.world.state_errors(pred, states)}


def probe_config(model_cfg: ModelConfig) -> ProbeConfig | None:
    """The state probe of a model: reading its task's state off its first camera (square: the
    probe's keypoint grid is), or None for a non-square one."""
    _, h, w = model_cfg.camera_list[0]
    if h != w:
        return None
    return ProbeConfig(image_size=h, task=model_cfg.task, success_threshold=get_task(model_cfg.task).success.threshold)


def records_states(episodes: list[Episode], task: str) -> bool:
    """Whether every episode records the task's true state (``observation.environment_state``)."""
    n = len(get_task(task).observations.state)
    return bool(episodes) and all(e.states.ndim == 2 and e.states.shape[1] == n for e in episodes)


def schedule(cfg: WorldModelTrainConfig, steps: int = 0, minutes: float = 0.0) -> Budget:
    """The training loop's budget for ``steps`` and/or ``minutes``: warmup, then a cosine down to a
    tenth of ``cfg.lr``, clipping at ``cfg.grad_clip``."""
    return Budget(steps, minutes, cfg.lr, cfg.warmup, final_lr=0.1, grad_clip=cfg.grad_clip)


def timed_phase(
    name: str,
    model: WorldModel,
    params: list[torch.nn.Parameter],
    batch_loss: Any,
    minutes: float,
    cfg: WorldModelTrainConfig,
    progress: bool,
    ranks: Ranks,
) -> dict[str, float]:
    """Optimise ``params`` of ``model`` on ``batch_loss()`` for ``minutes`` of wall time; the steps
    taken, the minutes and the last batch's loss."""
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    done = train_loop(
        name, model, batch_loss, opt, schedule(cfg, minutes=minutes), ranks, params=params, progress=progress
    )
    return {"steps": done.steps, "minutes": round(done.minutes, 2), "loss": done.loss}


def train_autoencoder(
    model: WorldModel, episodes: list[Episode], cfg: WorldModelTrainConfig, ranks: Ranks, progress: bool
) -> dict[str, float]:
    """Encoder and decoder alone on single frames for ``cfg.ae_minutes`` (the dynamics untouched)."""
    device = ranks.device
    sampler = WindowSampler(episodes, 1, cfg.seed + 1 + 1000 * ranks.rank)

    def batch_loss() -> torch.Tensor:
        views = sampler.sample(cfg.ae_batch).views
        loss = torch.zeros((), device=device)
        for cam, frames in enumerate(views):  # every camera, averaged
            x = WorldModel.to_input(frames[:, 0].to(device))
            with autocast(device):
                recon = model.decode(model.encode(x), cam)
            bg = model.decoder.backgrounds()[cam].detach()
            loss = loss + weighted_mse(recon, x, foreground(x, bg), cfg.fg_weight)
        return loss / len(views)

    params = [*model.encoder.parameters(), *model.decoder.parameters()]
    return timed_phase("autoencoder", model, params, batch_loss, cfg.ae_minutes, cfg, progress, ranks)


@torch.no_grad()
def encode_episodes(
    model: WorldModel, episodes: list[Episode], device: torch.device, progress: bool, batch: int = 256
) -> list[Episode]:
    """The episodes with every camera's frames replaced by the encoder's latents (T, Z, h, w) float32."""
    model.eval()

    def encode(frames: np.ndarray) -> np.ndarray:
        chunks = [
            model.encode(WorldModel.to_input(torch.from_numpy(frames[i : i + batch]).to(device))).float().cpu()
            for i in range(0, len(frames), batch)
        ]
        return torch.cat(chunks).numpy()

    out = []
    for e in tqdm(episodes, desc="encode", unit="episode", disable=not progress, leave=False):
        out.append(dataclasses.replace(e, frames=encode(e.frames), more_frames=tuple(map(encode, e.more_frames))))
    model.train()
    return out


def train_latent_dynamics(
    model: WorldModel, episodes: list[Episode], cfg: WorldModelTrainConfig, ranks: Ranks, progress: bool
) -> dict[str, float]:
    """The dynamics alone, for ``cfg.latent_minutes``, on ``latent_rollout``-step open-loop windows of
    latents encoded once by the (frozen) encoder: no frame is encoded or decoded per step."""
    device = ranks.device
    k = model.cfg.context
    latents = encode_episodes(model, episodes, device, progress and ranks.main)
    sampler = WindowSampler(latents, k + cfg.latent_rollout, cfg.seed + 2 + 1000 * ranks.rank)

    def batch_loss() -> torch.Tensor:
        batch = sampler.sample(cfg.latent_batch).to(device)
        actions, proprio = batch.actions, batch.proprio if model.cfg.proprio_dim else None
        prev = actions[:, k - 2] if k >= 2 else actions[:, 0]
        with autocast(device):
            zs, pred_proprio = model.rollout_all(
                [z[:, :k] for z in batch.views],
                actions[:, k - 1 : -1],
                prev,
                None if proprio is None else proprio[:, k - 1],
            )
        loss = sum(F.mse_loss(zp.float(), z[:, k:]) for zp, z in zip(zs, batch.views, strict=True)) / len(zs)
        if proprio is not None:
            norm = model.dynamics.normalise_proprio
            loss = loss + cfg.proprio_weight * F.mse_loss(norm(pred_proprio.float()), norm(proprio[:, k:].float()))
        return loss

    params = list(model.dynamics.parameters())
    return timed_phase("latent dynamics", model, params, batch_loss, cfg.latent_minutes, cfg, progress, ranks)


@dataclasses.dataclass
class TrainedWorldModel:
    metrics: dict[str, Any]  # rank 0's are the checkpoint's
    model: WorldModel  # this rank's weights
    step: int  # the joint phase's step this rank stopped at


def train(
    data: list[str | Path],
    out: str | Path,
    model_cfg: ModelConfig,
    cfg: WorldModelTrainConfig,
    probe_cfg: ProbeConfig | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainedWorldModel:
    """Train on this rank (every rank under torchrun; the state probe is rank 0's alone); the final
    metrics (also in ``out/config.json`` and ``out/metrics.jsonl``), this rank's model and step."""
    out = Path(out)
    with ranks_started() as ranks:
        device, main = ranks.device, ranks.main
        torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed + ranks.rank)
        episodes = load_episodes(
            [Path(d) for d in data],
            progress=progress and main,
            cameras=[name for name, _, _ in model_cfg.camera_list],
            proprio_dim=model_cfg.proprio_dim,
            action_dim=model_cfg.action_dim,
        )
        if probe_cfg is not None and not records_states(episodes, probe_cfg.task):
            probe_cfg = None  # nothing to learn the task's state from
            if main and progress:
                tqdm.write("no state probe: the datasets do not record the task's observation.environment_state")
        train_eps, val_eps = split_episodes(episodes, cfg.val_fraction, cfg.seed)
        sampler = WindowSampler(train_eps, model_cfg.context + cfg.rollout, cfg.seed * 1000 + ranks.rank)

        model = WorldModel(model_cfg).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        start = 0
        phases: dict[str, dict] = {}  # the optional phases done: name -> steps, minutes, loss
        if resume and (out / ckpt_io.CONFIG).exists():
            saved, doc = ckpt_io.read_config(out)
            if saved.model != model_cfg:
                raise ValueError(f"{out}: checkpoint model config {saved.model} differs from {model_cfg}")
            ckpt_io.load_weights(model, out / ckpt_io.MODEL, ckpt_io.digest(doc, out, ckpt_io.MODEL))
            ckpt_io.load_optimizer_state(out, opt)
            start = saved.step
            phases = {name: saved.metrics[name] for name in PHASES if name in saved.metrics}
        elif cfg.init:
            saved, doc = ckpt_io.read_config(cfg.init)
            if saved.model != model_cfg:
                raise ValueError(f"--init {cfg.init}: model config {saved.model} differs from {model_cfg}")
            ckpt_io.load_weights(model, Path(cfg.init) / ckpt_io.MODEL, ckpt_io.digest(doc, cfg.init, ckpt_io.MODEL))
        else:  # (under DDP rank 0's backgrounds reach every rank with its weights)
            with torch.no_grad():  # each camera's background starts as its median training frame
                for bg, frames in zip(model.decoder.backgrounds(), sampler.sample(64).views, strict=True):
                    bg.copy_(WorldModel.to_input(frames.to(device)).flatten(0, 1).median(0, keepdim=True).values)

        if main:
            out.mkdir(parents=True, exist_ok=True)
        log = (out / "metrics.jsonl").open("a") if main else None
        info = {
            "params": count_parameters(model),
            "train_episodes": len(train_eps),
            "val_episodes": len(val_eps),
            "train_frames": int(sum(len(e.frames) for e in train_eps)),
            "device": str(device),
            "world_size": ranks.world,
        }
        if main and progress:
            tqdm.write(json.dumps(info))

        def save(step: int, metrics: dict, probe: StateProbe | None = None) -> None:
            if main:
                record = ckpt_io.Checkpoint(model_cfg, cfg, probe_cfg if probe is not None else None, step, metrics)
                ckpt_io.save(out, record, model, probe, opt)

        def validate(extra: dict[str, Any]) -> dict[str, Any]:
            """Rank 0: the open-loop metrics, logged; the metrics."""
            val = open_loop(model, val_eps or train_eps, cfg.horizons, cfg.val_windows, cfg.seed, device)
            metrics = {**info, **extra, **phases, **val}
            log.write(json.dumps(metrics) + "\n")
            log.flush()
            if progress:
                tqdm.write(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in metrics.items()}))
            return metrics

        def phase(name: str, fn: Any) -> dict[str, Any]:
            """Run one optional phase (every rank), validate, log and checkpoint on rank 0; the metrics."""
            phases[name] = fn(model, train_eps, cfg, ranks, progress and main)
            if not main:
                return {**info, **phases}
            metrics = validate({"step": start, "phase": name})
            save(start, metrics)
            return metrics

        metrics: dict[str, Any] = {**info, **phases}
        if cfg.ae_minutes > 0 and "autoencoder" not in phases:
            metrics = phase("autoencoder", train_autoencoder)

        def batch_loss() -> dict[str, torch.Tensor]:
            return window_loss(model, sampler.sample(cfg.batch).to(device), cfg)

        def on_step(s: TrainStep) -> None:
            nonlocal metrics
            if s.done or s.step % cfg.val_every == 0:
                metrics = validate({"step": s.step, "minutes": s.minutes})
            if s.done or s.step % cfg.checkpoint_every == 0:
                save(s.step, metrics)

        final_step = start
        if cfg.steps > start:
            final_step = train_loop(
                "world model",
                model,
                batch_loss,
                opt,
                schedule(cfg, cfg.steps, cfg.max_minutes),
                ranks,
                start=start,
                on_step=on_step,
                progress=progress,
            ).step
        if cfg.latent_minutes > 0 and "latent_dynamics" not in phases:
            start = final_step
            metrics = phase("latent_dynamics", train_latent_dynamics)
        stop_ranks(ranks)  # what is left is rank 0's alone, however long its probe takes
        if main:
            if val_eps:
                rollout_figure(model, max(val_eps, key=lambda e: len(e.frames)), out / "rollout.png", device)
            probe = None
            if probe_cfg is not None and cfg.probe_steps > 0:
                probe, metrics["probe"] = fit_probe(train_eps, val_eps, probe_cfg, cfg, device)
                tqdm.write(json.dumps({"probe": metrics["probe"]}))
            elif probe_cfg is not None and cfg.init:  # the probe reads real frames: the init's one still fits
                init_ckpt, _, probe = ckpt_io.load(cfg.init, device=device)
                if probe is not None:
                    probe_cfg, metrics["probe"] = init_ckpt.probe, init_ckpt.metrics.get("probe", {})
            save(final_step, metrics, probe)
            log.close()
        return TrainedWorldModel(metrics, model, final_step)


def retrain_probe(
    data: list[str | Path], out: str | Path, probe_cfg: ProbeConfig | None, cfg: WorldModelTrainConfig
) -> dict:
    """Train a new state probe for an existing checkpoint (same episode split), keeping its model;
    ``probe_cfg`` None: the model's default probe (:func:`probe_config`)."""
    torch.set_num_threads(cfg.threads)
    ckpt, model, _ = ckpt_io.load(out, with_probe=False)
    probe_cfg = probe_cfg or probe_config(ckpt.model)
    if probe_cfg is None:
        raise ValueError(f"{out}: the model's first camera is not square; the state probe reads square frames")
    if probe_cfg.task != ckpt.model.task:
        raise ValueError(f"{out}: the model is of task {ckpt.model.task!r}, the probe would read {probe_cfg.task!r}")
    cameras = [name for name, _, _ in ckpt.model.camera_list]
    episodes = load_episodes([Path(d) for d in data], cameras=cameras)
    if not records_states(episodes, probe_cfg.task):
        raise ValueError("the datasets do not record the task's observation.environment_state: no probe to train")
    train_eps, val_eps = split_episodes(episodes, cfg.val_fraction, cfg.seed)
    probe, probe_metrics = fit_probe(train_eps, val_eps, probe_cfg, cfg, torch.device("cpu"))
    metrics = {**ckpt.metrics, "probe": probe_metrics}
    ckpt_io.save(out, ckpt_io.Checkpoint(ckpt.model, ckpt.train, probe_cfg, ckpt.step, metrics), model, probe)
    return metrics


def task_model_fields(task: Task, data: list[str], given: dict[str, Any]) -> dict[str, Any]:
    """The task's interface fields of a model config that ``given`` leaves open, its cameras sized as
    the first dataset records them (a recording may be smaller than the task's cameras)."""
    fields = {k: v for k, v in task_world(task.name).model_interface().items() if k not in given}
    if "cameras" in fields and data:
        from hiwm.data import LeRobotDataset

        features = LeRobotDataset(data[0]).features
        sized = []
        for name, h, w in fields["cameras"]:
            with contextlib.suppress(ValueError):  # not recorded: loading the episodes says so
                h, w = features[image_key(features, name)]["shape"][:2]
            sized.append([name, int(h), int(w)])
        fields["cameras"] = sized
    return fields


def run(args: argparse.Namespace) -> int:
    from hiwm.data import DatasetError

    cfg = WorldModelTrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(WorldModelTrainConfig)})
    try:
        if args.probe_only:
            saved, _ = ckpt_io.read_config(args.out)
            if args.task and args.task != saved.model.task:
                raise ValueError(f"{args.out}: the model is of task {saved.model.task!r}, not {args.task!r}")
            metrics = retrain_probe(args.data, args.out, None, cfg)
        else:
            name = args.task
            if not name and args.resume and (Path(args.out) / ckpt_io.CONFIG).exists():
                name = ckpt_io.read_config(args.out)[0].model.task  # resuming: the checkpoint's task
            task = get_task(name or DEFAULT_TASK)
            try:
                given = json.loads(args.model)
                if not isinstance(given, dict):
                    raise TypeError("must be a JSON object")
                if "task" in given and given["task"] != task.name:
                    raise ValueError(f"its task {given['task']!r} is not --task {task.name!r}")
            except (json.JSONDecodeError, TypeError, ValueError) as exc:
                raise SystemExit(f"--model: {exc}") from None
            fields = {**task_model_fields(task, args.data, given), **given, "task": task.name}
            try:
                model_cfg = preset(args.preset, **fields)
                check_task_interface(model_cfg, task)
            except (json.JSONDecodeError, TypeError, ValueError) as exc:
                raise SystemExit(f"--model: {exc}") from None
            probe_cfg = None if args.no_probe else probe_config(model_cfg)
            metrics = train(args.data, args.out, model_cfg, cfg, probe_cfg, resume=args.resume).metrics
    except (DatasetError, ckpt_io.CheckpointError, ValueError) as exc:
        raise SystemExit(f"hiwm train world-model: error: {exc}") from None
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(metrics))
    return 0
