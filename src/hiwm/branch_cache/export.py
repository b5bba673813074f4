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

With ``env_state`` (a function from a node's snapshot to the 5-vector Push-T state, e.g.
:meth:`hiwm.worlds.RealWorld.state_of`), a store recorded in the physics exports with the
privileged extras of a collected dataset too (``observation.environment_state``, ``next.coverage``,
``next.reward``, ``next.success``, ``next.done``): world-model training data.

Post-training weights frames by these (e.g. up-weight ``intervention`` and ``after_fork`` frames of
branches labelled ``corrected``/``success``). The frames are the world model's node frames (the
StateHandle ``thumbnail_png``, sent at the model's full resolution, 96x96 for Push-T).
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
from hiwm.data.lerobot import PUSHT_TASK, LeRobotDatasetWriter, pusht_features
from hiwm.files import atomic_write_json

LINEAGE_PATH = "meta/branch_lineage.json"
DEFAULT_TASK = PUSHT_TASK  # as every other hiwm dataset names it
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


def export_features(image_size: int, extras: bool = False) -> dict[str, dict]:
    """Push-T features (the privileged extras only with ``extras``) plus the lineage features."""
    return {**pusht_features(image_size, extras=extras), **LINEAGE_FEATURES}


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


def _episode(store: BranchStore, branch_id: str, segment: str = "trajectory") -> list[TreeNode]:
    traj = _segment(store, branch_id, store.trajectory(branch_id), segment)
    if len(traj) < 2 or all(GAP_LABEL in n.labels for n in traj[1:]):
        raise InvalidInputError(
            f"branch {branch_id} has {len(traj)} state(s): an episode needs at least 2 with a step between them"
        )
    for node in traj:
        if node.frame is None:
            raise InvalidInputError(f"branch {branch_id}: node {node.id} has no frame (StateHandle.thumbnail_png)")
        if len(node.state) != 2:
            raise InvalidInputError(
                f"branch {branch_id}: node {node.id} has observation state {node.state}, expected [x, y] "
                "(StateSnapshot.observation_state)"
            )
    for node in traj[1:]:
        if len(node.action) != 2:
            raise InvalidInputError(f"branch {branch_id}: node {node.id} has action {node.action}, expected [x, y]")
    return traj


def _env_states(store: BranchStore, traj: list[TreeNode], env_state: Callable[[bytes], np.ndarray]) -> np.ndarray:
    """The Push-T state of every node of ``traj`` read from its snapshot, with its coverage."""
    from hiwm.tasks.pusht.env import coverage_from_pose

    rows = []
    for node in traj:
        try:
            state = np.asarray(env_state(store.snapshot(node.id)), dtype=np.float64)
        except ValueError as exc:
            raise InvalidInputError(f"node {node.id}: no Push-T state in its snapshot ({exc})") from exc
        if state.shape != (5,) or not np.all(np.isfinite(state)):
            raise InvalidInputError(f"node {node.id}: Push-T state {state.tolist()}, expected 5 finite numbers")
        rows.append([*state, coverage_from_pose(state[2:])])
    return np.asarray(rows)


def _extras(states: np.ndarray, t: int) -> dict[str, Any]:
    """Frame ``t``'s privileged extras, as :mod:`hiwm.data.collect` writes them."""
    from hiwm.tasks.pusht.env import SUCCESS_COVERAGE, outcome_fields  # lazily: gym-pusht is heavy to import

    coverage = float(states[t + 1, 5])
    success = coverage > SUCCESS_COVERAGE
    done = success or t + 2 == len(states)
    return {
        "observation.environment_state": states[t, :5].astype(np.float32),
        **outcome_fields(coverage, success, done),
    }


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
    fps: int = 10,
    task: str = DEFAULT_TASK,
    segment: str = "trajectory",
    env_state: Callable[[bytes], np.ndarray] | None = None,
    progress: bool = True,
) -> ExportResult:
    """Write one episode per branch (appending to an existing dataset); all or nothing per call.
    ``segment`` as :data:`SEGMENTS`; ``env_state`` adds the physics extras (module docstring).

    Idempotent per branch: a branch of this store whose ``segment`` the dataset already holds (its
    ``meta/branch_lineage.json`` says so) is skipped, so exporting twice adds no duplicate episodes;
    ``ExportResult.skipped`` names them."""
    if segment not in SEGMENTS:
        raise InvalidInputError(f"segment must be one of {SEGMENTS}, got {segment!r}")
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
    # validate everything before writing anything
    episodes = {b: _episode(store, b, segment) for b in branch_ids}
    states = {b: _env_states(store, episodes[b], env_state) for b in branch_ids} if env_state else {}
    first = decode_png(store.blob(episodes[branch_ids[0]][0].frame), f"node {episodes[branch_ids[0]][0].id}")
    size = first.shape[0]
    if first.shape != (size, size, 3):
        raise InvalidInputError(f"frames must be square RGB, got {first.shape}")
    indices = []
    frames = 0
    features = export_features(size, extras=env_state is not None)
    with LeRobotDatasetWriter(root, fps, features, flush_every=len(branch_ids)) as writer:
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
                extras = _extras(states[branch_id], t) if env_state else {}
                writer.add_frame(
                    {
                        **extras,
                        "observation.image": image,
                        "observation.state": np.asarray(node.state, dtype=np.float32),
                        "action": np.asarray(nxt.action, dtype=np.float32),
                        "intervention": np.asarray([nxt.source == SOURCE_HUMAN]),
                        "action.source": np.asarray([nxt.source], dtype=np.int8),
                        "branch.lineage": np.asarray([lineage_index], dtype=np.int64),
                        "branch.after_fork": np.asarray([nxt.branch == branch_id]),
                    }
                )
            index = writer.save_episode(task)
            indices.append(index)
            frames += written
            gaps = [n.id for n in traj[1:] if GAP_LABEL in n.labels]
            doc["episodes"].append(
                {"episode_index": index, "lineage": lineage_index, "node_ids": [n.id for n in traj], "gaps": gaps}
            )
    # after the dataset commit: a crash in between leaves episodes whose lineage index has no entry yet
    atomic_write_json(lineage_path, doc)
    return ExportResult(root, len(indices), frames, indices, skipped)
