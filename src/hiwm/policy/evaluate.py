"""Evaluate a policy in its task's world in lockstep: success rate (95 % Wilson interval), the task's
success metric, videos.

Episodes run in parallel worker processes, each with its own env (the task's,
:func:`hiwm.tasks.world.load_world`) and its own copy of the policy; an episode's result depends
only on its seed (and the policy's sampling seed). Outputs under ``out``: ``episodes.csv`` and
``episodes.json`` (one row per episode), ``summary.json`` (each seed's outcome too, ``per_seed``),
``episodes.mp4`` (the first ``videos`` episodes tiled) and ``<metric>.png`` (the task's success
metric per step).
"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing as mp
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from tqdm import tqdm

from hiwm.stats import wilson
from hiwm.worlds import run_episode


@dataclass
class EvalConfig:
    policy: str  # checkpoint folder or "module:Class"
    policy_args: str = ""  # JSON keyword arguments for module:Class
    seeds: str = "0:50"  # A:B is range(A, B); or comma-separated seeds
    episodes: int | None = None  # the first N of the seeds
    workers: int = 2
    max_steps: int | None = None  # None: the task's episode length
    image_size: int | None = None  # None: the task's camera size
    videos: int = 4
    out: str | None = None
    threads: int = 1  # torch threads per worker
    policy_seed: int = 0
    world: str = ""  # a world-model checkpoint: evaluate in the model (same initial states) instead
    task: str = ""  # the task whose env runs; "": the checkpoint's training task (else the default task)

    def __post_init__(self) -> None:
        from hiwm.tasks import DEFAULT_TASK, get_task

        if not self.task:
            self.task = DEFAULT_TASK
            if Path(self.policy).is_dir():
                from hiwm.policy.checkpoint import read_config

                self.task = read_config(self.policy).get("train", {}).get("task") or DEFAULT_TASK
        spec = get_task(self.task)
        if self.max_steps is None:
            self.max_steps = spec.episode_steps


def parse_seeds(text: str, episodes: int | None = None) -> list[int]:
    """``"A:B"`` -> range(A, B); ``"1,5,9"`` -> those; cut to ``episodes`` (or extended from A when A:)."""
    text = text.strip()
    if ":" in text:
        a, _, b = text.partition(":")
        start = int(a or 0)
        stop = int(b) if b else start + (episodes or 50)
        seeds = list(range(start, stop))
    else:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    if episodes is not None:
        if episodes > len(seeds):
            raise ValueError(f"{episodes} episodes asked for but the seed range {text!r} has {len(seeds)}")
        seeds = seeds[:episodes]
    if not seeds:
        raise ValueError(f"no seeds in {text!r}")
    return seeds


_WORKER: dict[str, Any] = {}
J, R = TypeVar("J"), TypeVar("R")


def _init_worker(cfg: EvalConfig) -> None:
    # A pool restarts a worker whose initializer raises, for ever: keep the error for the first job
    # instead, which hands it to the parent and ends the evaluation.
    try:
        _load_worker(cfg)
    except Exception as exc:
        _WORKER["error"] = exc


def _load_worker(cfg: EvalConfig) -> None:
    """This process's policy, env and task world for ``cfg`` (what :func:`worker` returns)."""
    import torch

    from hiwm.policy.runtime import load_policy
    from hiwm.tasks import get_task
    from hiwm.tasks.world import load_world

    torch.set_num_threads(cfg.threads)
    world = load_world(get_task(cfg.task))
    outside = ":" in cfg.policy and not Path(cfg.policy).exists()
    kwargs = (json.loads(cfg.policy_args) if cfg.policy_args else {}) if outside else {"seed": cfg.policy_seed}
    if cfg.world:  # the same seeds' initial states, stepped by the world model, judged by its probe
        from hiwm.world_model.world import ModelWorld

        env = ModelWorld(cfg.world, max_steps=cfg.max_steps)
    else:
        env = world.make_env(cfg.image_size)
    _WORKER.update(policy=load_policy(cfg.policy, **kwargs), env=env, cfg=cfg, world=world)


def worker() -> dict[str, Any]:
    """This process's loaded policy, env, task world and config; the error that loading them raised."""
    if "error" in _WORKER:
        raise _WORKER["error"]
    return _WORKER


def map_workers(cfg: EvalConfig, fn: Callable[[J], R], jobs: list[J]) -> Iterator[R]:
    """``fn`` of each job, in order, in processes that each hold ``cfg``'s policy, env and task world
    (:func:`worker`): ``cfg.workers`` of them, or this one with ``workers <= 1``."""
    if cfg.workers <= 1:
        _load_worker(cfg)
        try:
            yield from map(fn, jobs)
        finally:  # a renderer left open complains at exit
            getattr(_WORKER.pop("env", None), "close", lambda: None)()
        return
    with mp.get_context("spawn").Pool(min(cfg.workers, len(jobs)), _init_worker, (cfg,)) as pool:
        yield from pool.imap(fn, jobs)


def _work(job: tuple[int, bool]) -> dict[str, Any]:
    w, (seed, record) = worker(), job
    return run_episode(w["policy"], w["env"], seed, w["cfg"].max_steps, record, w["world"])


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Run every seed; write the outputs when ``cfg.out`` is set; return the summary."""
    seeds = parse_seeds(cfg.seeds, cfg.episodes)
    jobs = [(s, i < cfg.videos) for i, s in enumerate(seeds)]
    rows = list(tqdm(map_workers(cfg, _work, jobs), total=len(jobs), desc="eval"))
    from hiwm.tasks import get_task

    success = get_task(cfg.task).success
    metric = success.metric
    n, k = len(rows), sum(r["success"] for r in rows)
    low, high = wilson(k, n)
    summary = {
        "task": cfg.task,
        "policy": cfg.policy,
        "episodes": n,
        "successes": k,
        "success_rate": k / n,
        "success_ci95": [low, high],
        f"mean_max_{metric}": float(np.mean([r[f"max_{metric}"] for r in rows])),
        "mean_steps": float(np.mean([r["steps"] for r in rows])),
        "seeds": cfg.seeds,
        # each seed's outcome: what pairs two checkpoints evaluated on the same seeds (hiwm.stats)
        "per_seed": [{"seed": r["seed"], "success": r["success"], f"max_{metric}": r[f"max_{metric}"]} for r in rows],
        "config": asdict(cfg),
    }
    if cfg.out:
        write_outputs(Path(cfg.out), rows, summary, metric, success.threshold)
    return summary


def table(metric: str = "coverage") -> list[str]:
    """The columns of episodes.csv for a task whose success metric is ``metric``."""
    return ["seed", "success", f"max_{metric}", f"final_{metric}", "steps", "queries"]


def write_outputs(
    out: Path, rows: list[dict[str, Any]], summary: dict[str, Any], metric: str = "coverage", threshold: float = 0.95
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    columns = table(metric)
    with (out / "episodes.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows({k: r[k] for k in columns} for r in rows)
    (out / "episodes.json").write_text(json.dumps([{k: r[k] for k in columns} for r in rows], indent=1))
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    recorded = [r for r in rows if r["frames"] is not None]
    if recorded:
        write_video(out / "episodes.mp4", [r["frames"] for r in recorded])
    plot_metric(out / f"{metric}.png", rows, summary, metric, threshold)


def write_video(path: Path, episodes: list[np.ndarray], fps: int = 10) -> None:
    """Episodes side by side in a grid (2 columns), each holding its last frame once it has ended."""
    from hiwm.data.video import VideoEncoder

    cols = min(2, len(episodes))
    rows = math.ceil(len(episodes) / cols)
    h, w = episodes[0].shape[1:3]
    length = max(len(e) for e in episodes)
    enc = VideoEncoder(path, fps, rows * h + rows * h % 2, cols * w + cols * w % 2, gop=10)
    try:
        for t in range(length):
            canvas = np.zeros((enc.height, enc.width, 3), np.uint8)
            for i, ep in enumerate(episodes):
                r, c = divmod(i, cols)
                canvas[r * h : (r + 1) * h, c * w : (c + 1) * w] = ep[min(t, len(ep) - 1)]
            enc.add(canvas)
    finally:
        enc.close()


def plot_metric(
    path: Path, rows: list[dict[str, Any]], summary: dict[str, Any], metric: str = "coverage", threshold: float = 0.95
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for r in rows:
        ax.plot(r[metric], color="tab:green" if r["success"] else "tab:red", alpha=0.4, lw=0.8)
    ax.axhline(threshold, color="k", ls="--", lw=0.8)
    low, high = summary["success_ci95"]
    top = max([1.0] if metric == "coverage" else [threshold * 2, *(max(r[metric]) for r in rows)])
    ax.set(xlabel="step", ylabel=metric, ylim=(min(0.0, *(min(r[metric]) for r in rows)), top))
    ax.set_title(f"success {summary['success_rate']:.0%} [{low:.0%}, {high:.0%}] of {summary['episodes']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
