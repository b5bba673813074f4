"""Scripted-expert episodes on Push-T, in-process and in parallel, into a dataset (and a bag).

Each worker runs :class:`PushTEnv` with a :class:`ScriptedExpert` for one seed and
returns the episode's arrays and, optionally, the robot traffic of that episode as CDR
(what the robot node would publish and receive, stamped on a 10 Hz timeline). The
parent writes episodes in seed order, so a run is reproducible for a given ``seed``.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hiwm.comm.interfaces import serialize
from hiwm.data.lerobot import PUSHT_TASK, SOURCE_SCRIPTED, LeRobotDatasetWriter, pusht_features
from hiwm.pusht.messages import TOPICS, action_chunk, observation_messages

FPS = 10
LABELS = ("executed", "clean")


@dataclass
class CollectConfig:
    episodes: int = 10
    seed: int = 0
    noise: float = 0.0  # ExpertConfig.noisy level: 0 clean, 1 sloppy, 2+ mostly failing
    labels: str = "executed"  # "executed": the action taken; "clean": what the noise-free expert would do there
    image_size: int = 96
    max_steps: int = 300  # an episode ends at success or after this many steps
    workers: int = 1
    task: str = PUSHT_TASK
    flush_every: int = 10

    def __post_init__(self) -> None:
        if self.labels not in LABELS:
            raise ValueError(f"labels must be one of {LABELS}, got {self.labels!r}")


@dataclass
class EpisodeResult:
    seed: int
    frames: dict[str, np.ndarray]
    success: bool
    messages: list[tuple[str, int, bytes]] = field(default_factory=list)  # topic, stamp ns, CDR


_ENV: dict[int, object] = {}


def _env(image_size: int) -> object:
    if image_size not in _ENV:
        from hiwm.pusht.env import PushTEnv

        _ENV[image_size] = PushTEnv(image_size=image_size)
    return _ENV[image_size]


def expert_episode(
    seed: int,
    noise: float = 0.0,
    image_size: int = 96,
    max_steps: int = 300,
    messages: bool = False,
    start_ns: int = 0,
    labels: str = "executed",
) -> EpisodeResult:
    """One scripted-expert episode from ``seed``; with ``messages`` also its robot traffic as CDR.

    Observation ``t`` is stamped ``start_ns + t / FPS`` and the command answering it half
    a period later. ``labels="clean"`` records, at every state the (noisy) expert visits, the
    action of a noise-free expert instead of the one taken (DART, Laskey et al. 2017): a policy
    learns how to recover from the states its own mistakes lead to. Such episodes teach a policy,
    not a world model (the recorded action did not cause the next frame).
    """
    from hiwm.pusht.env import outcome_fields
    from hiwm.pusht.expert import ExpertConfig, ScriptedExpert

    env = _env(image_size)
    expert = ScriptedExpert(ExpertConfig.noisy(noise), seed=seed)
    labeller = ScriptedExpert(ExpertConfig(), seed=seed) if labels == "clean" else None
    obs = env.reset(seed=seed)
    episode_id = f"seed-{seed}"
    dt = 1_000_000_000 // FPS
    cols: dict[str, list] = {k: [] for k in pusht_features(image_size)}
    traffic: list[tuple[str, int, bytes]] = []

    def publish(o: object, t: int, done: bool) -> None:
        if messages:
            stamp = start_ns + t * dt
            for topic, msg in observation_messages(dataclasses.replace(o, done=done), episode_id, stamp).items():
                traffic.append((topic, stamp, serialize(msg)))

    publish(obs, 0, obs.done)
    t = 0
    while not obs.done and t < max_steps:
        action = expert.act(obs.state)
        if messages:
            stamp = start_ns + t * dt + dt // 2
            chunk = action_chunk(action, stamp, SOURCE_SCRIPTED, "scripted_expert", 1.0 / FPS)
            traffic.append(("robot/command", stamp, serialize(chunk)))
        label = labeller.act(obs.state) if labeller else action
        nxt = env.step(action)
        t += 1
        done = nxt.done or t >= max_steps
        cols["observation.image"].append(obs.image)
        cols["observation.state"].append(obs.agent_pos)
        cols["action"].append(label)
        cols["intervention"].append(False)
        cols["action.source"].append(SOURCE_SCRIPTED)
        cols["observation.environment_state"].append(obs.state)
        for key, value in outcome_fields(nxt.coverage, nxt.success, done).items():
            cols[key].append(value)
        publish(nxt, t, done)
        obs = nxt
    frames = {k: np.asarray(v) for k, v in cols.items()}
    return EpisodeResult(seed, frames, bool(obs.success), traffic)


def _work(job: tuple[int, float, int, int, bool, int, str]) -> EpisodeResult:
    return expert_episode(*job)


def run_episodes(cfg: CollectConfig, messages: bool, start_ns: int = 0) -> Iterator[EpisodeResult]:
    """Episodes for seeds ``seed .. seed + episodes - 1``, in that order, on ``workers`` processes.

    Episode ``i``'s traffic starts at ``start_ns + i * (max_steps + 10) / FPS``.
    """
    slot = (cfg.max_steps + 10) * (1_000_000_000 // FPS)
    jobs = [
        (cfg.seed + i, cfg.noise, cfg.image_size, cfg.max_steps, messages, start_ns + i * slot, cfg.labels)
        for i in range(cfg.episodes)
    ]
    if cfg.workers <= 1:
        for job in jobs:
            yield _work(job)
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(cfg.workers) as pool:
        yield from pool.imap(_work, jobs, chunksize=1)


@dataclass
class CollectSummary:
    episodes: int
    frames: int
    successes: int
    seconds: float
    dataset: str
    bag: str | None

    @property
    def success_rate(self) -> float:
        return self.successes / self.episodes if self.episodes else 0.0


def collect(
    cfg: CollectConfig,
    out: str | Path,
    bag_path: str | Path | None = None,
    on_episode: Callable[[EpisodeResult], None] | None = None,
) -> CollectSummary:
    """Run the expert and write every episode to the dataset at ``out`` (created or appended)."""
    from hiwm.data.bag import BagWriter

    start = time.monotonic()
    frames = successes = done = 0
    bag = BagWriter(bag_path) if bag_path else None
    writer = LeRobotDatasetWriter(out, fps=FPS, features=pusht_features(cfg.image_size), flush_every=cfg.flush_every)
    try:
        if bag:
            for topic, msgtype in TOPICS.items():
                bag.add_topic("/" + topic, msgtype)
        for result in run_episodes(cfg, messages=bag is not None, start_ns=time.time_ns()):
            n = len(result.frames["action"])
            for t in range(n):
                writer.add_frame({k: v[t] for k, v in result.frames.items()})
            writer.save_episode(task=cfg.task)
            if bag:
                for topic, stamp, cdr in result.messages:
                    bag.write("/" + topic, cdr, stamp)
            frames += n
            successes += result.success
            done += 1
            if on_episode:
                on_episode(result)
    except BaseException:
        writer.close()  # keep the whole episodes saved so far
        if bag:
            bag.close()
        raise
    writer.close()
    if bag:
        bag.close()
    return CollectSummary(done, frames, successes, time.monotonic() - start, str(out), str(bag_path) if bag else None)
