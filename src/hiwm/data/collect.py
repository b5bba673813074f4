"""Scripted-expert episodes of any task, in-process and in parallel, into a dataset (and a bag).

Each worker builds the task's world (:func:`hiwm.tasks.world.load_world`: its env and scripted
expert) and runs one seed; it returns the episode's columns and, optionally, the robot traffic
of that episode as CDR (what the robot node would publish and receive, stamped on the task's
control timeline). The parent writes episodes in seed order, so a run is reproducible for a
given ``seed``.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hiwm.comm.interfaces import serialize
from hiwm.data.lerobot import SOURCE_SCRIPTED, DatasetError, LeRobotDatasetWriter, read_info
from hiwm.files import atomic_write_json
from hiwm.tasks import DEFAULT_TASK, get_task
from hiwm.tasks.world import TaskWorld, load_world

LABELS = ("executed", "clean")
# meta/hiwm_collect.json: the CollectConfig of each `collect` call that completed into a dataset, so a
# model trained on it records how to collect it again (a shipped model's data, :func:`recipe`)
RECIPES = Path("meta", "hiwm_collect.json")
RUNTIME_FIELDS = ("workers", "flush_every")  # how a run was executed, not what it collected


@dataclass
class CollectConfig:
    episodes: int = 10
    seed: int = 0
    noise: float = 0.0  # the expert's noise level: 0 clean, 1 sloppy, 2+ mostly failing
    labels: str = "executed"  # "executed": the action taken; "clean": what the noise-free expert would do there
    image_size: int | None = None  # square frames of this size; None: each camera's own size
    max_steps: int | None = None  # an episode ends at success or after this many steps; None: the task's
    workers: int = 1
    task: str = DEFAULT_TASK  # the task's name (hiwm.tasks)
    instruction: str = ""  # the episodes' language task in the dataset; "": the task world's
    flush_every: int = 10

    def __post_init__(self) -> None:
        if self.labels not in LABELS:
            raise ValueError(f"labels must be one of {LABELS}, got {self.labels!r}")
        spec = get_task(self.task)  # ValueError naming the known tasks
        if self.max_steps is None:
            self.max_steps = spec.episode_steps


@dataclass
class EpisodeResult:
    seed: int
    frames: dict[str, np.ndarray]
    success: bool
    messages: list[tuple[str, int, bytes]] = field(default_factory=list)  # topic, stamp ns, CDR


_ENV: dict[tuple[str, int | None], object] = {}


def _env(world: TaskWorld, image_size: int | None) -> object:
    key = (world.task.name, image_size)
    if key not in _ENV:
        _ENV[key] = world.make_env(image_size)
    return _ENV[key]


def close_envs() -> None:
    """Free this process's cached envs (a MuJoCo renderer left open complains at interpreter exit)."""
    while _ENV:
        env = _ENV.popitem()[1]
        close = getattr(env, "close", None)
        if close is not None:
            close()


def expert_episode(
    seed: int,
    noise: float = 0.0,
    image_size: int | None = None,
    max_steps: int | None = None,
    messages: bool = False,
    start_ns: int = 0,
    labels: str = "executed",
    task: str = DEFAULT_TASK,
) -> EpisodeResult:
    """One scripted-expert episode of ``task`` from ``seed``; with ``messages`` also its robot traffic as CDR.

    Observation ``t`` is stamped ``start_ns + t / fps`` and the command answering it half
    a period later. ``labels="clean"`` records, at every state the (noisy) expert visits, the
    action of a noise-free expert instead of the one taken (DART, Laskey et al. 2017): a policy
    learns how to recover from the states its own mistakes lead to. Such episodes teach a policy,
    not a world model (the recorded action did not cause the next frame).
    """
    spec = get_task(task)
    world = load_world(spec)
    max_steps = spec.episode_steps if max_steps is None else max_steps
    env = _env(world, image_size)
    expert = world.make_expert(noise, seed=seed)
    labeller = world.make_expert(0.0, seed=seed) if labels == "clean" else None
    obs = env.reset(seed=seed)
    episode_id = f"seed-{seed}"
    dt = round(1_000_000_000 / spec.fps)
    cols: dict[str, list] = {k: [] for k in world.features(image_size)}
    traffic: list[tuple[str, int, bytes]] = []
    best = [world.metric(obs)]

    def publish(o: object, t: int, done: bool) -> None:
        if messages:
            stamp = start_ns + t * dt
            best[0] = max(best[0], world.metric(o))
            for topic, msg in world.observation_messages(o, episode_id, stamp, done, best[0]).items():
                traffic.append((topic, stamp, serialize(msg)))

    publish(obs, 0, obs.done)
    t = 0
    while not obs.done and t < max_steps:
        action = expert.act(world.state(obs))
        if messages:
            stamp = start_ns + t * dt + dt // 2
            chunk = world.action_chunk(action, stamp, SOURCE_SCRIPTED, "scripted_expert")
            traffic.append(("robot/command", stamp, serialize(chunk)))
        label = labeller.act(world.state(obs)) if labeller else action
        nxt = env.step(action)
        t += 1
        done = nxt.done or t >= max_steps
        row = world.frame(obs, label, nxt, done)
        row["intervention"] = False
        row["action.source"] = SOURCE_SCRIPTED
        for key, values in cols.items():
            values.append(row[key])
        publish(nxt, t, done)
        obs = nxt
    frames = {k: np.asarray(v) for k, v in cols.items()}
    return EpisodeResult(seed, frames, bool(obs.success), traffic)


def _work(job: tuple[int, float, int | None, int, bool, int, str, str]) -> EpisodeResult:
    return expert_episode(*job)


def run_episodes(cfg: CollectConfig, messages: bool, start_ns: int = 0) -> Iterator[EpisodeResult]:
    """Episodes for seeds ``seed .. seed + episodes - 1``, in that order, on ``workers`` processes.

    Episode ``i``'s traffic starts at ``start_ns + i * (max_steps + 10) / fps``.
    """
    slot = (cfg.max_steps + 10) * round(1_000_000_000 / get_task(cfg.task).fps)
    jobs = [
        (cfg.seed + i, cfg.noise, cfg.image_size, cfg.max_steps, messages, start_ns + i * slot, cfg.labels, cfg.task)
        for i in range(cfg.episodes)
    ]
    if cfg.workers <= 1:
        try:
            for job in jobs:
                yield _work(job)
        finally:
            close_envs()
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


def read_recipes(root: Path) -> list[dict]:
    """The recipes recorded in the dataset at ``root`` (none: an empty list)."""
    path = root / RECIPES
    if not path.exists():
        return []
    try:
        recipes = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable collect recipes ({exc})") from exc
    if not isinstance(recipes, list) or not all(isinstance(r, dict) for r in recipes):
        raise DatasetError(f"{path}: expected a list of collect recipes")
    return recipes


def record_recipe(root: Path, cfg: CollectConfig, episodes: int) -> None:
    """Append ``cfg`` (its episodes done) to the dataset's recipes (atomically)."""
    fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in RUNTIME_FIELDS}
    atomic_write_json(root / RECIPES, [*read_recipes(root), {**fields, "episodes": episodes}], indent=1)


def recipe(root: str | Path) -> dict | None:
    """The CollectConfig fields that reproduce the dataset at ``root`` seed for seed, or None where no
    single completed `collect` call wrote all of its episodes (other writers, appends, none)."""
    recipes = read_recipes(Path(root))
    if len(recipes) != 1 or recipes[0].get("episodes") != int(read_info(Path(root))["total_episodes"]):
        return None
    return recipes[0]


def write_episodes(
    results: Iterator[EpisodeResult],
    out: str | Path,
    task: str,
    image_size: int | None = None,
    instruction: str = "",
    flush_every: int = 10,
    bag_path: str | Path | None = None,
    on_episode: Callable[[EpisodeResult], None] | None = None,
) -> tuple[int, int, int]:
    """Write each episode of ``results`` to the dataset at ``out`` (created or appended; the task's
    layout) and its traffic to the new bag at ``bag_path``: (episodes, frames, successes) written.
    An error keeps the whole episodes saved before it."""
    from hiwm.data.bag import BagWriter

    frames = successes = done = 0
    spec = get_task(task)
    world = load_world(spec)
    bag = BagWriter(bag_path) if bag_path else None
    writer = LeRobotDatasetWriter(
        out, fps=round(spec.fps), features=world.features(image_size), robot_type=spec.name, flush_every=flush_every
    )
    try:
        if bag:
            for topic, msgtype in world.topics().items():
                bag.add_topic("/" + topic, msgtype)
        for result in results:
            n = len(result.frames["action"])
            for t in range(n):
                writer.add_frame({k: v[t] for k, v in result.frames.items()})
            writer.save_episode(task=instruction or world.instruction)
            if bag:
                for topic, stamp, cdr in result.messages:
                    bag.write("/" + topic, cdr, stamp)
            frames += n
            successes += result.success
            done += 1
            if on_episode:
                on_episode(result)
    finally:
        writer.close()
        if bag:
            bag.close()
    return done, frames, successes


def collect(
    cfg: CollectConfig,
    out: str | Path,
    bag_path: str | Path | None = None,
    on_episode: Callable[[EpisodeResult], None] | None = None,
) -> CollectSummary:
    """Run the expert and write every episode to the dataset at ``out`` (created or appended)."""
    start = time.monotonic()
    results = run_episodes(cfg, messages=bag_path is not None, start_ns=time.time_ns())
    done, frames, successes = write_episodes(
        results, out, cfg.task, cfg.image_size, cfg.instruction, cfg.flush_every, bag_path, on_episode
    )
    record_recipe(Path(out), cfg, done)
    return CollectSummary(
        done, frames, successes, time.monotonic() - start, str(out), str(bag_path) if bag_path else None
    )
