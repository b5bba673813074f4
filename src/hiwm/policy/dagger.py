"""DAgger's data (Ross et al. 2011): a policy drives its task's physics closed loop and the task's
noise-free scripted expert labels every state it visits; the episodes go to a dataset of the task's
layout, to aggregate with the demonstrations and train on.

The expert follows the policy's trajectory state by state, as it would its own (its plan keeps the
contact it engaged), so the labels of one episode are one expert's answers along it. As with DART
labels (:mod:`hiwm.data.collect`), the recorded action did not cause the next frame: such data teaches
a policy, not a world model. Episodes run in the evaluation's workers (:mod:`hiwm.policy.evaluate`),
one seed each, written in seed order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hiwm.data.collect import CollectSummary, EpisodeResult, write_episodes
from hiwm.data.lerobot import SOURCE_SCRIPTED
from hiwm.policy import evaluate
from hiwm.policy.evaluate import EvalConfig, parse_seeds
from hiwm.worlds import policy_steps


@dataclass
class DaggerConfig:
    policy: str  # the checkpoint that drives
    seeds: str = "20000:20060"  # as hiwm eval's: A:B or a comma-separated list
    workers: int = 2
    max_steps: int | None = None  # None: the task's episode length
    threads: int = 1  # torch threads per worker
    policy_seed: int = 0
    task: str = ""  # "": the checkpoint's training task

    def __post_init__(self) -> None:
        own = EvalConfig(self.policy).task  # the checkpoint's training task (an outside policy: the default)
        if self.task and self.task != own and Path(self.policy).is_dir():
            raise ValueError(f"policy {self.policy} was trained on task {own!r}, not {self.task!r}")
        self.task = self.task or own

    def eval_config(self) -> EvalConfig:
        return EvalConfig(
            policy=self.policy,
            seeds=self.seeds,
            workers=self.workers,
            max_steps=self.max_steps,
            threads=self.threads,
            policy_seed=self.policy_seed,
            task=self.task,
            videos=0,
        )


def relabelled_episode(policy: object, env: object, world: object, seed: int, max_steps: int) -> EpisodeResult:
    """One closed-loop episode of ``policy`` from ``seed``, each visited state labelled by the expert."""
    expert = world.make_expert(0.0, seed=seed)
    policy.reset()
    obs = env.reset(seed=seed)
    cols: dict[str, list] = {k: [] for k in world.features(None)}
    for _, _, nxt in policy_steps(policy, env, obs, max_steps, world):
        label = expert.act(world.state(obs))
        row = world.frame(obs, label, nxt, nxt.done or nxt.step >= max_steps)
        row["intervention"] = False
        row["action.source"] = SOURCE_SCRIPTED
        for key, values in cols.items():
            values.append(row[key])
        obs = nxt
    return EpisodeResult(seed, {k: np.asarray(v) for k, v in cols.items()}, bool(obs.success))


def _work(seed: int) -> EpisodeResult:
    worker = evaluate.worker()
    return relabelled_episode(worker["policy"], worker["env"], worker["world"], seed, worker["cfg"].max_steps)


def collect_relabelled(
    cfg: DaggerConfig, out: str | Path, on_episode: Callable[[EpisodeResult], None] | None = None
) -> CollectSummary:
    """Write ``cfg``'s relabelled episodes, in seed order, to the dataset at ``out`` (created or
    appended); its success rate is the driving policy's."""
    start = time.monotonic()
    ecfg = cfg.eval_config()
    episodes = evaluate.map_workers(ecfg, _work, parse_seeds(ecfg.seeds))
    done, frames, successes = write_episodes(episodes, out, ecfg.task, on_episode=on_episode)
    return CollectSummary(done, frames, successes, time.monotonic() - start, str(out), None)
