"""The state probe's success verdict: fresh real episodes to judge it, and its calibrated threshold.

The real env calls an episode a success at the first frame whose success metric passes the task's
threshold (and ends it). The probe reads the state, hence the metric, off a frame with some error,
which near success can lean one way (a pixel of block position can be worth 10 % of a coverage);
so the probe's verdict, "some frame of the episode has a probe metric above ``success_threshold``",
uses a threshold fitted on fresh real episodes (every frame, the final one included) instead of
the task's. Datasets cannot be used for this: LeRobot episodes never hold the frame after the last
action, which is the one that reached success.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from hiwm.tasks import DEFAULT_TASK, Task
from hiwm.world_model.probe import StateProbe, task_world

CALIBRATION_SEED = 800_000  # first seed of the calibration episodes (training data uses < 100_000)
LEVELS = (0.0, 1.0, 2.0)  # expert noise presets in turn: clean, sloppy, mostly failing


@dataclass
class RealEpisode:
    frames: np.ndarray  # (T, H, W, 3) uint8 of the task's first camera, every observation including the final one
    success: bool
    seed: int
    level: float


def real_episodes(
    image_size: int, episodes: int, first_seed: int, progress: bool = True, task: Task | str = DEFAULT_TASK
) -> list[RealEpisode]:
    """Fresh episodes of the task's real env driven by its scripted expert at noise levels 0, 1, 2 in turn."""
    world = task_world(task if isinstance(task, str) else task.name)
    env = world.make_env(image_size)
    camera = world.task.cameras[0].name
    out = []
    for i in tqdm(range(episodes), desc="real episodes", disable=not progress, leave=False):
        seed, level = first_seed + i, LEVELS[i % len(LEVELS)]
        expert = world.make_expert(level, seed=seed)
        obs = env.reset(seed=seed)
        frames = [world.images(obs)[camera]]
        while not obs.done:
            obs = env.step(expert.act(world.state(obs)))
            frames.append(world.images(obs)[camera])
        out.append(RealEpisode(np.stack(frames), bool(obs.success), seed, level))
    close = getattr(env, "close", None)
    if close is not None:
        close()
    return out


def max_probe_metric(probe: StateProbe, frames: np.ndarray) -> float:
    """The highest success metric the probe reads on any of an episode's frames."""
    states = np.concatenate([probe.predict(frames[i : i + 256]) for i in range(0, len(frames), 256)])
    return max(probe.metric(s) for s in states)


def fit_threshold(max_metric: np.ndarray, success: np.ndarray) -> tuple[float, float]:
    """The threshold that best separates successful episodes by their max probe metric: (threshold, agreement).

    Candidates lie midway between consecutive sorted maxima; among equally good ones the middle is
    taken, so the threshold sits as far as the data allows from both kinds of episode.
    """
    if len(max_metric) == 0 or len(max_metric) != len(success):
        raise ValueError(f"need one max metric per episode, got {len(max_metric)} for {len(success)} episodes")
    values = np.sort(np.unique(np.concatenate([max_metric, [0.0, 1.0]])))
    candidates = (values[:-1] + values[1:]) / 2
    agreement = np.array([np.mean((max_metric > t) == success) for t in candidates])
    best = np.flatnonzero(agreement == agreement.max())
    return float(candidates[best[len(best) // 2]]), float(agreement.max())


def calibrate(probe: StateProbe, episodes: list[RealEpisode]) -> dict[str, float]:
    """Fit ``probe.cfg.success_threshold`` on real episodes; returns the figures of the fit."""
    metrics = np.array([max_probe_metric(probe, e.frames) for e in episodes])
    success = np.array([e.success for e in episodes])
    threshold, agreement = fit_threshold(metrics, success)
    probe.cfg.success_threshold = threshold
    return {"episodes": len(episodes), "successes": int(success.sum()), "threshold": threshold, "agreement": agreement}


def agreement(probe: StateProbe, episodes: list[RealEpisode]) -> dict[str, float]:
    """How often the probe's verdict (at its threshold) matches the real env on these episodes."""
    verdicts = [probe.success(max_probe_metric(probe, e.frames)) for e in episodes]
    agree = [v == e.success for v, e in zip(verdicts, episodes, strict=True)]
    return {
        "episodes": len(episodes),
        "real_successes": sum(e.success for e in episodes),
        "agreement": float(np.mean(agree)) if agree else 0.0,
        "threshold": probe.cfg.success_threshold,
    }
