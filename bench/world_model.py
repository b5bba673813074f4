"""World-model benchmark: speed of sessions and quality of a trained checkpoint. Prints one JSON object.

Targets (this 2-core CPU, small preset): the default task's shape (96x96, 2-D bump) step latency at
batch 1 p50 <= 10 ms, >= 300 frames/s at batch 64; an arm shape (one 128x128 camera, N-D actions,
proprio) p50 <= 15 ms, >= 200 frames/s at batch 64; snapshot and restore <= 1 ms each, snapshot
<= 64 KiB; the success detector's verdict (by default the probe's) agrees with the real env on
>= 90 % of held-out real episodes.

    python bench/world_model.py --checkpoint DIR [--data HELDOUT_DATASET ...] [--episodes 20]
    python bench/world_model.py --untrained [--preset gpu] [--task so101_pick]
    python bench/world_model.py --untrained [--action-dim 6 --proprio-dim 6 --cameras front:128x128]

Speed is measured on the checkpoint's model (or, with ``--untrained``, a fresh one of the preset
and the interface given: the task's (``--task``, default the default task's), or N-D actions in
[-1, 1] with the "mlp" conditioning unless ``--conditioning`` says otherwise). Quality:
PSNR/SSIM of open-loop predictions at horizons 1, 10, 50 on the held-out datasets' episodes,
driven by their recorded actions (with the copy-the-last-frame baseline; averaged over cameras),
the predicted proprio's mean absolute error (and copying the last one) where the model has
proprio, and how far from the
recorded states the probe reads the predicted frames there (the task's state errors, e.g. agent
and block px); the probe's errors on their real frames; its success verdict (at its calibrated
threshold) vs. the task's real env on fresh expert episodes (clean, sloppy and failing, seeds used
neither for training nor for calibration), and the verdict inside the model on those datasets.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

from hiwm.tasks import DEFAULT_TASK, task_names
from hiwm.world_model import detector as detectors
from hiwm.world_model.checkpoint import load
from hiwm.world_model.config import CONDITIONING, PRESETS, ModelConfig, preset
from hiwm.world_model.model import WorldModel
from hiwm.world_model.session import Session, step_many


def percentiles(times: list[float]) -> dict[str, float]:
    ms = np.asarray(times) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def random_actions(cfg: ModelConfig, rng: np.random.Generator, n: int) -> np.ndarray:
    """Actions inside the middle 80 % of the limits (away from a workspace's walls, a joint's stops)."""
    low, high = np.asarray(cfg.low), np.asarray(cfg.high)
    return rng.uniform(low + 0.1 * (high - low), high - 0.1 * (high - low), (n, cfg.action_dim))


def speed(model: WorldModel, steps: int, batch: int, batch_frames: int = 2000) -> dict:
    cfg = model.cfg
    rng = np.random.default_rng(0)
    frames = {name: np.full((h, w, 3), 200, np.uint8) for name, h, w in cfg.camera_list}
    proprio = np.zeros(cfg.proprio_dim) if cfg.proprio_dim else None
    s = Session(model)
    s.reset(frames=frames, proprio=proprio)
    for a in random_actions(cfg, rng, 10):  # warm-up
        s.step(a)
    lat = []
    for a in random_actions(cfg, rng, steps):
        t = time.perf_counter()
        s.step(a)
        lat.append(time.perf_counter() - t)
    snaps, restores = [], []
    for _ in range(200):
        t = time.perf_counter()
        data = s.snapshot()
        snaps.append(time.perf_counter() - t)
        t = time.perf_counter()
        s.restore(data)
        restores.append(time.perf_counter() - t)
    many = [Session(model) for _ in range(batch)]
    for m in many:
        m.reset(frames=frames, proprio=proprio)
    step_many(many, random_actions(cfg, rng, batch))
    times = []
    for _ in range(max(3, batch_frames // batch)):
        acts = random_actions(cfg, rng, batch)
        t = time.perf_counter()
        step_many(many, acts)
        times.append(time.perf_counter() - t)
    return {
        "step_batch1": percentiles(lat),
        f"fps_batch{batch}": float(batch / np.median(times)),
        "snapshot": {**percentiles(snaps), "bytes": len(data), "history_steps": len(s.actions)},
        "restore": percentiles(restores),
    }


def parse_cameras(text: str) -> list[tuple[str, int, int]]:
    """``front:128x128,wrist:96x96`` -> [("front", 128, 128), ("wrist", 96, 96)]."""
    out = []
    for item in text.split(","):
        name, _, size = item.partition(":")
        h, _, w = size.partition("x")
        try:
            out.append((name.strip(), int(h), int(w)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"camera {item!r}: expected NAME:HEIGHTxWIDTH") from None
    return out


def untrained_config(args: argparse.Namespace) -> ModelConfig:
    """The preset with the interface asked for: the task's when nothing is asked."""
    from hiwm.tasks import get_task
    from hiwm.tasks.world import load_world

    fields: dict = {}
    if (args.action_dim is not None and args.action_dim != 2) or args.conditioning == "mlp":
        n = args.action_dim or 2
        fields.update(action_dim=n, action_low=[-1.0] * n, action_high=[1.0] * n)
    if args.conditioning or fields:
        fields["action_conditioning"] = args.conditioning or "mlp"
    if args.proprio_dim:
        fields["proprio_dim"] = args.proprio_dim
    if args.cameras:
        fields["cameras"] = args.cameras
    if not fields:  # nothing asked: the task's interface
        fields = {**load_world(get_task(args.task)).model_interface(), "task": args.task}
    return preset(args.preset, **fields)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="trained checkpoint directory")
    parser.add_argument("--untrained", action="store_true", help="a fresh model of --preset and the interface below")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small", help="with --untrained")
    parser.add_argument("--task", default=DEFAULT_TASK, choices=task_names(), help="with --untrained: its interface")
    parser.add_argument("--action-dim", type=int, help="with --untrained: action values (default the task's)")
    parser.add_argument("--proprio-dim", type=int, default=0, help="with --untrained: proprio values")
    parser.add_argument("--cameras", type=parse_cameras, help="with --untrained: NAME:HxW,... (default image:96x96)")
    parser.add_argument("--conditioning", choices=CONDITIONING, help="with --untrained: bump or mlp")
    parser.add_argument("--data", nargs="*", default=[], help="held-out LeRobot datasets for quality")
    parser.add_argument("--episodes", type=int, default=60, help="fresh real episodes for the probe verdict")
    parser.add_argument("--first-seed", type=int, default=900_000)
    parser.add_argument("--windows", type=int, default=64)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument(
        "--batch-frames", type=int, default=2000, help="frames stepped for the batched rate (>= 3 batches)"
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if not args.checkpoint and not args.untrained:
        parser.error("--checkpoint DIR or --untrained")
    torch.set_num_threads(args.threads)
    probe = detector = None
    if args.checkpoint:
        ckpt, model, probe = load(args.checkpoint)
        detector = detectors.for_checkpoint(args.checkpoint, probe)
        out: dict = {"checkpoint": args.checkpoint, "train_step": ckpt.step}
    else:
        cfg = untrained_config(args)
        model, out = WorldModel(cfg).eval(), {"checkpoint": None, "preset": args.preset}
    cfg = model.cfg
    out.update({"threads": args.threads, "params": sum(p.numel() for p in model.parameters())})
    out["interface"] = {
        "action_dim": cfg.action_dim,
        "action_conditioning": cfg.action_conditioning,
        "proprio_dim": cfg.proprio_dim,
        "cameras": cfg.camera_list,
        "task": cfg.task,
    }
    out["speed"] = speed(model, args.steps, args.batch, args.batch_frames)
    if args.data:
        from hiwm.world_model.data import load_episodes
        from hiwm.world_model.train import open_loop, probe_errors

        cameras = [name for name, _, _ in cfg.camera_list]
        episodes = load_episodes(args.data, False, cameras, cfg.proprio_dim, cfg.action_dim)
        q = open_loop(model, episodes, (1, 10, 50), args.windows, 0, torch.device("cpu"), probe)
        out["open_loop"] = {k: round(v, 3) if isinstance(v, float) else v for k, v in q.items()}
        if probe is not None:
            out["probe_errors_real_frames"] = probe_errors(probe, episodes)
        if detector is not None:
            key = "probe_verdict_in_model" if detector.kind == "probe" else "detector_verdict_in_model"
            out[key] = detectors.agreement_in_model(model, detector, episodes)
        if detector is not None and detector.kind != "probe":
            out["detector_real_episodes"] = detectors.evaluate(
                detector, detectors.load_outcomes(args.data, detector.cfg.camera, bool(detector.cfg.proprio_dim))
            )
    if probe is not None:
        from hiwm.world_model.verdict import agreement, real_episodes

        real = real_episodes(probe.cfg.image_size, args.episodes, args.first_seed, task=probe.cfg.task)
        out["probe_verdict_real_env"] = agreement(probe, real)
    print(json.dumps(out, default=lambda x: None if isinstance(x, float) and math.isnan(x) else str(x)))


if __name__ == "__main__":
    main()
