"""World-model benchmark: speed of sessions and quality of a trained checkpoint. Prints one JSON object.

Targets (issue 4, this 2-core CPU, 96x96): step latency at batch 1 p50 <= 10 ms; >= 300 frames/s
at batch 64; snapshot and restore <= 1 ms each, snapshot <= 64 KiB; probe success verdict agrees
with the real env on >= 90 % of held-out real episodes.

    python bench/world_model.py --checkpoint DIR [--data HELDOUT_DATASET ...] [--episodes 20]

Speed is measured on the checkpoint's model (or the default size with ``--untrained``). Quality:
PSNR/SSIM of open-loop predictions at horizons 1, 10, 50 on the held-out datasets' episodes,
driven by their recorded actions (with the copy-the-last-frame baseline), and how far from the
recorded states the probe reads the predicted agent and block there; the probe's errors on
their real frames; its success verdict (at its calibrated threshold) vs. the real env on fresh
expert episodes (clean, sloppy and failing, seeds used neither for training nor for calibration),
and the verdict inside the model on those datasets.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
from tqdm import tqdm

from hiwm.world_model.checkpoint import load
from hiwm.world_model.config import ModelConfig
from hiwm.world_model.model import WorldModel
from hiwm.world_model.probe import coverage_from_pose
from hiwm.world_model.session import Session, step_many


def percentiles(times: list[float]) -> dict[str, float]:
    ms = np.asarray(times) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def speed(model: WorldModel, steps: int, batch: int) -> dict:
    rng = np.random.default_rng(0)
    frame = np.full((model.cfg.image_size, model.cfg.image_size, 3), 200, np.uint8)
    s = Session(model)
    s.reset(frames=frame)
    for a in rng.uniform(50, 460, (10, 2)):  # warm-up
        s.step(a)
    lat = []
    for a in rng.uniform(50, 460, (steps, 2)):
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
        m.reset(frames=frame)
    step_many(many, rng.uniform(50, 460, (batch, 2)))
    times = []
    for _ in range(max(3, 2000 // batch)):
        acts = rng.uniform(50, 460, (batch, 2))
        t = time.perf_counter()
        step_many(many, acts)
        times.append(time.perf_counter() - t)
    return {
        "step_batch1": percentiles(lat),
        f"fps_batch{batch}": float(batch / np.median(times)),
        "snapshot": {**percentiles(snaps), "bytes": len(data), "history_steps": len(s.actions)},
        "restore": percentiles(restores),
    }


def model_verdicts(model: WorldModel, probe, episodes) -> dict:
    """Open-loop rollouts of recorded episodes in the model: probe verdict on generated frames vs. the real one."""
    agree, n = 0, 0
    for ep in tqdm(episodes, desc="model episodes", leave=False):
        k = model.cfg.context
        if len(ep.frames) <= k:
            continue
        s = Session(model)
        s.reset(frames=ep.frames[:k], prev_action=ep.actions[k - 2] if k >= 2 else ep.states[0, :2])
        verdict = False
        for a in ep.actions[k - 1 :]:
            frame = s.step(a)
            verdict = verdict or probe.success(coverage_from_pose(probe.predict(frame)[0, 2:]))
        agree += verdict == ep.success
        n += 1
    return {"episodes": n, "agreement": agree / max(1, n)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="trained checkpoint directory")
    parser.add_argument("--untrained", action="store_true", help="speed only, default-size model")
    parser.add_argument("--data", nargs="*", default=[], help="held-out LeRobot datasets for quality")
    parser.add_argument("--episodes", type=int, default=60, help="fresh real episodes for the probe verdict")
    parser.add_argument("--first-seed", type=int, default=900_000)
    parser.add_argument("--windows", type=int, default=64)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if not args.checkpoint and not args.untrained:
        parser.error("--checkpoint DIR or --untrained")
    torch.set_num_threads(args.threads)
    probe = None
    if args.checkpoint:
        ckpt, model, probe = load(args.checkpoint)
        out: dict = {"checkpoint": args.checkpoint, "train_step": ckpt.step}
    else:
        model, out = WorldModel(ModelConfig()).eval(), {"checkpoint": None}
    out.update({"threads": args.threads, "params": sum(p.numel() for p in model.parameters())})
    out["speed"] = speed(model, args.steps, args.batch)
    if args.data:
        from hiwm.world_model.data import load_episodes
        from hiwm.world_model.train import open_loop, probe_errors

        episodes = load_episodes(args.data, progress=False)
        q = open_loop(model, episodes, (1, 10, 50), args.windows, 0, torch.device("cpu"), probe)
        out["open_loop"] = {k: round(v, 3) if isinstance(v, float) else v for k, v in q.items()}
        if probe is not None:
            out["probe_errors_real_frames"] = probe_errors(probe, episodes)
            out["probe_verdict_in_model"] = model_verdicts(model, probe, episodes)
    if probe is not None:
        from hiwm.world_model.verdict import agreement, real_episodes

        real = real_episodes(probe.cfg.image_size, args.episodes, args.first_seed)
        out["probe_verdict_real_env"] = agreement(probe, real)
    print(json.dumps(out, default=lambda x: None if isinstance(x, float) and math.isnan(x) else str(x)))


if __name__ == "__main__":
    main()
