"""Branches of the cache -> training episodes in a LeRobot v3 dataset (one episode per branch).

An exported branch is its whole trajectory: from the session's first state through the fork point
into the branch, up to its head. Frame ``t`` pairs the state of node ``t`` (its frame PNG, decoded,
and its observation state) with the action that led to node ``t+1`` and who produced it, so a
trajectory of ``n`` nodes gives ``n - 1`` frames, less one per ``gap`` node (a state recorded under
the last one the cache had because its real parent never reached the cache: the action that led
to it was not taken from the frame before, so that pair is left out; ``meta/branch_lineage.json``
lists the gap nodes of each episode). Per frame:

- ``intervention`` (bool): the action came from a human (LeRobot's correction flag);
- ``action.source`` (int8): 0 policy, 1 human, 2 scripted;
- ``branch.lineage`` (int64): index into ``meta/branch_lineage.json``, which names the branch, its
  session, its ancestry of branches, the fork node (the failure state it came from), its labels and its
  final ``verdict`` (``success``: true, false or null; ``source``: ``operator`` when a ``success``/``failure``
  label from the playground decided it, ``detector`` when the success detector's ``detector:*`` label did);
- ``branch.after_fork`` (bool): the frame belongs to the branch's own continuation (its action led
  to a node the branch owns), not to the prefix it shares with its parent branch.

``segment`` picks how much of a branch becomes the episode: ``"trajectory"`` (all of it, the default),
``"branch"`` (from its fork node on: the correction and what followed it) or ``"correction"`` (from its
fork node through its last human action: the operator's frames only, as HG-DAgger trains on).

The dataset has the task's layout (``task``, a registered task: its world's
:meth:`~hiwm.tasks.world.TaskWorld.features` at the frames' size, as :mod:`hiwm.data.collect` writes
them). With ``env_state`` (a function from a node's snapshot to the task's true state, e.g.
:meth:`hiwm.worlds.RealWorld.state_of`, or to the pair (state, success metric) for a task whose state
alone does not decide its metric), a store recorded in the physics exports with the privileged
extras of a collected dataset too (``observation.environment_state`` and the ``next.*`` values of
:meth:`~hiwm.tasks.world.TaskWorld.outcome`, success meaning the metric above the task's threshold):
world-model training data.

Post-training weights frames by these (e.g. up-weight ``intervention`` and ``after_fork`` frames of
branches labelled ``corrected``/``success``). The frames are the world model's node frames (the
StateHandle ``thumbnail_png``, sent at the model's full resolution): one camera's, so a task with
several cameras cannot be exported.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from hiwm.branch_cache.store import GAP_LABEL, SOURCE_HUMAN, BranchStore, InvalidInputError, TreeNode, branch_verdict
from hiwm.comm import images
from hiwm.comm.images import encode_png  # noqa: F401  (re-exported: the frame format of the cache)
from hiwm.comm.interfaces import InterfaceError
from hiwm.data.lerobot import LeRobotDatasetWriter
from hiwm.files import atomic_write_json
from hiwm.tasks import DEFAULT_TASK, get_task
from hiwm.tasks.world import TaskWorld, load_world

LINEAGE_PATH = "meta/branch_lineage.json"
#: The episodes' language task: "" is the task world's, as every other hiwm dataset of the task names it.
DEFAULT_INSTRUCTION = ""
LINEAGE_FEATURES = {
    "branch.lineage": {"dtype": "int64", "shape": [1], "names": None},
    "branch.after_fork": {"dtype": "bool", "shape": [1], "names": None},
}


@dataclass
class ExportResult:
    root: Path
    episodes: int
    frames: int
    episode_indices: list[int]
    skipped: list[str] = field(default_factory=list)  # branches the dataset already held


def is_privileged(key: str) -> bool:
    """Whether a feature is one of the physics extras (the true state and the ``next.*`` outcome)."""
    return key == "observation.environment_state" or key.startswith("next.")


def export_features(world: TaskWorld, image_size: int, extras: bool = False) -> dict[str, dict]:
    """The task's features at ``image_size`` (the privileged extras only with ``extras``) plus the lineage."""
    features = {k: f for k, f in world.features(image_size).items() if extras or not is_privileged(k)}
    return {**features, **LINEAGE_FEATURES}


def decode_png(data: bytes, where: str) -> np.ndarray:
    try:
        return images.decode_png(data)
    except InterfaceError as exc:
        raise InvalidInputError(f"{where}: frame is not a readable PNG ({exc})") from exc


SEGMENTS = ("trajectory", "branch", "correction")


def _segment(store: BranchStore, branch_id: str, traj: list[TreeNode], segment: str) -> list[TreeNode]:
    if segment == "trajectory":
        return traj
    base = store.branch(branch_id).base_node
    start = next((i for i, n in enumerate(traj) if n.id == base), 0)
    traj = traj[start:]
    if segment == "correction":
        human = [i for i, n in enumerate(traj) if n.source == SOURCE_HUMAN and n.branch == branch_id]
        if not human:
            raise InvalidInputError(f"branch {branch_id} has no human action after its fork: no correction to export")
        traj = traj[: human[-1] + 1]
    return traj


def _episode(store: BranchStore, world: TaskWorld, branch_id: str, segment: str = "trajectory") -> list[TreeNode]:
    traj = _segment(store, branch_id, store.trajectory(branch_id), segment)
    if len(traj) < 2 or all(GAP_LABEL in n.labels for n in traj[1:]):
        raise InvalidInputError(
            f"branch {branch_id} has {len(traj)} state(s): an episode needs at least 2 with a step between them"
        )
    task = world.task
    proprio, actions = list(task.observations.proprio), list(task.action.names)
    for node in traj:
        if node.frame is None:
            raise InvalidInputError(f"branch {branch_id}: node {node.id} has no frame (StateHandle.thumbnail_png)")
        if len(node.state) != len(proprio):
            raise InvalidInputError(
                f"branch {branch_id}: node {node.id} has observation state {node.state}, expected {task.name}'s "
                f"{proprio} (StateSnapshot.observation_state)"
            )
    for node in traj[1:]:
        if len(node.action) != len(actions):
            raise InvalidInputError(
                f"branch {branch_id}: node {node.id} has action {node.action}, expected {task.name}'s {actions}"
            )
    return traj


def _env_states(
    store: BranchStore, world: TaskWorld, traj: list[TreeNode], env_state: Callable[[bytes], Any]
) -> list[tuple[np.ndarray, float]]:
    """The true state of every node of ``traj`` read from its snapshot, with the success metric there."""
    task = world.task
    dim = len(task.observations.state)
    rows = []
    for node in traj:
        try:
            read = env_state(store.snapshot(node.id))
        except ValueError as exc:
            raise InvalidInputError(f"node {node.id}: no {task.name} state in its snapshot ({exc})") from exc
        state, metric = read if isinstance(read, tuple) else (read, None)
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (dim,) or not np.all(np.isfinite(state)):
            raise InvalidInputError(
                f"node {node.id}: {task.name} state {state.tolist()}, expected {dim} finite numbers"
            )
        if metric is None:
            try:
                metric = world.metric_from_state(state)
            except (NotImplementedError, ValueError) as exc:
                raise InvalidInputError(f"node {node.id}: {exc}; env_state must give (state, metric)") from exc
        rows.append((state, float(metric)))
    return rows


def _extras(world: TaskWorld, states: list[tuple[np.ndarray, float]], t: int) -> dict[str, Any]:
    """Frame ``t``'s privileged extras, as :mod:`hiwm.data.collect` writes them."""
    metric = states[t + 1][1]
    success = metric > world.task.success.threshold
    done = success or t + 2 == len(states)
    return {"observation.environment_state": states[t][0].astype(np.float32), **world.outcome(metric, success, done)}


def _lineage_entry(store: BranchStore, branch_id: str, store_path: str, segment: str) -> dict:
    ancestry = store.lineage(branch_id)
    branch = ancestry[0]
    return {
        "branch_id": branch.id,
        "session_id": branch.session,
        "parent_branch": branch.parent_branch,
        "fork_node": branch.base_node,  # the state the branch was forked from (the failure state)
        "ancestry": [b.id for b in ancestry],
        "labels": branch.labels,
        "verdict": dict(zip(("success", "source"), branch_verdict(branch.labels), strict=True)),
        "store": store_path,
        "segment": segment,
    }


def _exported(doc: dict) -> set[tuple[str, str, str]]:
    """(store, branch, segment) of every branch a dataset's lineage already holds an episode of."""
    out = set()
    for entry in doc["branches"]:
        store = str(Path(entry["store"]).resolve()) if entry.get("store") else ""
        out.add((store, entry.get("branch_id", ""), entry.get("segment", "trajectory")))
    return out


def export_branches(
    store: BranchStore,
    branch_ids: Sequence[str],
    output_dir: str | Path,
    *,
    fps: int | None = None,
    task: str = DEFAULT_TASK,
    instruction: str = DEFAULT_INSTRUCTION,
    segment: str = "trajectory",
    env_state: Callable[[bytes], Any] | None = None,
    progress: bool = True,
) -> ExportResult:
    """Write one episode per branch (appending to an existing dataset); all or nothing per call.
    ``task`` is the registered task the branches act in (its dataset layout; ``fps`` its control rate
    unless given), ``instruction`` the
    episodes' language task ("": the task world's); ``segment`` as :data:`SEGMENTS`; ``env_state``
    adds the physics extras (module docstring).

    Idempotent per branch: a branch of this store whose ``segment`` the dataset already holds (its
    ``meta/branch_lineage.json`` says so) is skipped, so exporting twice adds no duplicate episodes;
    ``ExportResult.skipped`` names them."""
    if segment not in SEGMENTS:
        raise InvalidInputError(f"segment must be one of {SEGMENTS}, got {segment!r}")
    try:
        spec = get_task(task)
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None
    if not branch_ids:
        raise InvalidInputError("export needs at least one branch id")
    if len(set(branch_ids)) != len(branch_ids):
        raise InvalidInputError(f"branch ids repeat: {list(branch_ids)}")
    root = Path(output_dir)
    lineage_path = root / LINEAGE_PATH
    doc = json.loads(lineage_path.read_text()) if lineage_path.exists() else {"branches": [], "episodes": []}
    store_path = str(Path(store.path).resolve())
    done = _exported(doc)
    skipped = [b for b in branch_ids if (store_path, store.branch(b).id, segment) in done]
    branch_ids = [b for b in branch_ids if b not in skipped]
    if not branch_ids:
        return ExportResult(root, 0, 0, [], skipped)
    world = load_world(spec)
    cameras = world.camera_features()
    if len(cameras) != 1:
        raise InvalidInputError(
            f"task {spec.name!r} has {len(cameras)} cameras; a cache node's frame is one camera's: cannot export"
        )
    (camera_key,) = cameras.values()
    # validate everything before writing anything
    episodes = {b: _episode(store, world, b, segment) for b in branch_ids}
    states = {b: _env_states(store, world, episodes[b], env_state) for b in branch_ids} if env_state else {}
    first = decode_png(store.blob(episodes[branch_ids[0]][0].frame), f"node {episodes[branch_ids[0]][0].id}")
    size = first.shape[0]
    if first.shape != (size, size, 3):
        raise InvalidInputError(f"frames must be square RGB, got {first.shape}")
    indices = []
    frames = 0
    features = export_features(world, size, extras=env_state is not None)
    instruction = instruction or world.instruction
    fps = fps or round(spec.fps)
    with LeRobotDatasetWriter(root, fps, features, robot_type=spec.name, flush_every=len(branch_ids)) as writer:
        for branch_id in tqdm(branch_ids, desc="export", unit="branch", disable=not progress):
            traj = episodes[branch_id]
            lineage_index = len(doc["branches"])
            doc["branches"].append(_lineage_entry(store, branch_id, store_path, segment))
            written = 0
            for t, (node, nxt) in enumerate(itertools.pairwise(traj)):
                if GAP_LABEL in nxt.labels:
                    continue
                written += 1
                image = decode_png(store.blob(node.frame, f"node {node.id} (frame)"), f"node {node.id}")
                if image.shape != (size, size, 3):
                    raise InvalidInputError(f"node {node.id}: frame {image.shape}, expected {(size, size, 3)}")
                extras = _extras(world, states[branch_id], t) if env_state else {}
                writer.add_frame(
                    {
                        **extras,
                        camera_key: image,
                        "observation.state": np.asarray(node.state, dtype=np.float32),
                        "action": np.asarray(nxt.action, dtype=np.float32),
                        "intervention": np.asarray([nxt.source == SOURCE_HUMAN]),
                        "action.source": np.asarray([nxt.source], dtype=np.int8),
                        "branch.lineage": np.asarray([lineage_index], dtype=np.int64),
                        "branch.after_fork": np.asarray([nxt.branch == branch_id]),
                    }
                )
            index = writer.save_episode(instruction)
            indices.append(index)
            frames += written
            gaps = [n.id for n in traj[1:] if GAP_LABEL in n.labels]
            doc["episodes"].append(
                {"episode_index": index, "lineage": lineage_index, "node_ids": [n.id for n in traj], "gaps": gaps}
            )
    # after the dataset commit: a crash in between leaves episodes whose lineage index has no entry yet
    atomic_write_json(lineage_path, doc)
    return ExportResult(root, len(indices), frames, indices, skipped)
