"""The branch cache's logic behind its node, without middleware: record states, answer requests.

Recording: the world-model node publishes, for every step, a StateSnapshot (the bytes) and a
StateHandle (what it is: session, step, parent, action, source, frame). They arrive on two topics
in any order, so both wait in memory until they pair up (and until the parent state is recorded);
a handle is then one store ``append``. The parent of a handle is the node holding
``parent_snapshot_id`` in its session: the session cursor when it holds it (the usual case, and the
one that keeps a fresh fork's steps on the fork), else the newest node with that snapshot.

Resuming: each topic delivers one world model's messages in order, so a handle whose parent was
never recorded and is not waiting here will never get it (the cache was down, restarted mid-session,
or started after the world model). Such a handle re-anchors its session: it is recorded under the
session's cursor (the last state the cache holds), or as the first state of a session the cache has
never seen, with the label ``gap``; the log says so. Likewise a handle still waiting for its
snapshot when a later handle's snapshot has arrived will never get it and is dropped. Both happen
once the handle has waited ``resume_after`` seconds, the chance given to messages that arrive late.

Requests mirror the node's services: ``list``, ``rollback`` (restores the world model, then moves
the cursor), ``fork`` (restores the world model to the fork point, then creates the branch),
``label`` and ``export``. ``restore(snapshot_id) -> (ok, message)`` is the world model's restore
service, injected by the node.
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hiwm.branch_cache.export import DEFAULT_INSTRUCTION, LINEAGE_PATH, export_branches
from hiwm.branch_cache.store import (
    SOURCES,
    BranchCacheError,
    BranchStore,
    InvalidInputError,
    TreeNode,
    parse_id,
)
from hiwm.tasks import DEFAULT_TASK

Restore = Callable[[str], tuple[bool, str]]
LIST_WHATS = ("sessions", "branches", "nodes", "trajectory", "node", "children")


@dataclass
class StateHandle:
    """The fields of a StateHandle the cache uses."""

    session_id: str
    snapshot_id: str
    parent_snapshot_id: str
    step: int
    action_source: int
    action: list[float]
    frame: bytes
    received: float = field(default_factory=time.monotonic)


class BadInput(ValueError):
    """A message the cache refuses (logged by the node, which keeps running)."""


class BranchCacheCore:
    def __init__(
        self,
        store: BranchStore,
        restore: Restore,
        *,
        max_pending: int = 1024,
        max_pending_snapshots: int = 256,  # <= 64 KiB each: bounded memory while handles lag
        pending_timeout: float = 30.0,
        resume_after: float = 2.0,
        fork_restores: bool = True,
        export_fps: int = 0,  # 0: the task's control rate
        task: str = DEFAULT_TASK,  # the registered task of the sessions (the exports' layout)
        instruction: str = DEFAULT_INSTRUCTION,  # the exported episodes' language task ("": the task's)
        export_root: str | Path | None = None,
        log: Callable[[str, str], None] | None = None,
    ) -> None:
        self.store, self.restore = store, restore
        self.max_pending, self.pending_timeout, self.resume_after = max_pending, pending_timeout, resume_after
        self.max_pending_snapshots = max_pending_snapshots
        self.fork_restores, self.export_fps, self.task = fork_restores, export_fps, task
        self.instruction = instruction
        # exports requested over the graph land only under this folder (default: next to the store)
        self.export_root = Path(export_root) if export_root else Path(store.path).resolve().parent / "exports"
        self.log = log or (lambda key, message: None)
        self.snapshots: OrderedDict[str, tuple[bytes, list[float]]] = OrderedDict()
        self.handles: list[StateHandle] = []
        self.recorded = 0

    # -- recording -----------------------------------------------------------
    def on_snapshot(self, session_id: str, snapshot_id: str, data: bytes, observation_state: Sequence[float]) -> None:
        if not snapshot_id or self.store.blob_id(data) != snapshot_id:
            raise BadInput(
                f"snapshot {snapshot_id[:16]!r} of session {session_id!r}: "
                f"id is not the {self.store.hash_name} of its data"
            )
        state = [float(v) for v in observation_state]
        if not all(math.isfinite(v) for v in state):
            raise BadInput(f"snapshot {snapshot_id[:16]}: observation_state {state} is not finite")
        self.snapshots[snapshot_id] = (bytes(data), state)
        self.snapshots.move_to_end(snapshot_id)
        while len(self.snapshots) > self.max_pending_snapshots:
            dropped, _ = self.snapshots.popitem(last=False)
            self.log(
                "pending", f"dropped unpaired snapshot {dropped[:16]} (more than {self.max_pending_snapshots} waiting)"
            )
        self.drain()

    def on_state(self, handle: StateHandle) -> list[TreeNode]:
        if not handle.session_id or not handle.snapshot_id:
            raise BadInput("StateHandle without session_id or snapshot_id")
        if handle.action_source not in SOURCES:
            raise BadInput(f"StateHandle step {handle.step}: unknown action_source {handle.action_source}")
        if not all(math.isfinite(v) for v in handle.action):
            raise BadInput(f"StateHandle step {handle.step}: action {handle.action} is not finite")
        if len(self.handles) >= self.max_pending:
            raise BadInput(f"more than {self.max_pending} StateHandles wait for their snapshot or parent: dropped")
        self.handles.append(handle)
        return self.drain()

    def _parent(self, handle: StateHandle) -> TreeNode | bool | None:
        """The parent node, None for a first state, False when not recorded (yet)."""
        if not handle.parent_snapshot_id:
            return None
        node = self.store.find_parent(handle.session_id, handle.parent_snapshot_id)
        return False if node is None else node

    def _has_snapshot(self, handle: StateHandle) -> bool:
        return handle.snapshot_id in self.snapshots or self.store.has_blob(handle.snapshot_id)

    def _awaited(self, handle: StateHandle) -> bool:
        """Whether the parent of ``handle`` is a state still waiting here (for its snapshot or parent)."""
        return any(
            h.session_id == handle.session_id and h.snapshot_id == handle.parent_snapshot_id for h in self.handles
        )

    def _drop_unpaired(self) -> None:
        """Drop handles whose snapshot can no longer come: a later handle of the session has its snapshot,
        and snapshots arrive in the order they were published (it was sent before this cache listened)."""
        later_has_snapshot: set[str] = set()
        now = time.monotonic()
        for handle in reversed(list(self.handles)):
            if self._has_snapshot(handle):
                later_has_snapshot.add(handle.session_id)
            elif handle.session_id in later_has_snapshot and now - handle.received >= self.resume_after:
                self.handles.remove(handle)
                self.log(
                    "unpaired",
                    f"dropped StateHandle step {handle.step} of {handle.session_id!r}: its snapshot was published "
                    "before this cache was listening",
                )

    def _anchor(self, handle: StateHandle) -> TreeNode | None:
        """Where a handle whose parent will never arrive goes: under its session's cursor, or first of a new one."""
        try:
            cursor = self.store.session(handle.session_id).cursor_node
        except BranchCacheError:
            return None
        return None if cursor is None else self.store.get(cursor)

    def drain(self) -> list[TreeNode]:
        """Record every waiting handle whose snapshot and parent are there; repeat until none moves."""
        out: list[TreeNode] = []
        progress = True
        while progress and self.handles:
            progress = False
            self._drop_unpaired()
            for handle in list(self.handles):
                parent = self._parent(handle)
                gap = parent is False
                if gap and (time.monotonic() - handle.received < self.resume_after or self._awaited(handle)):
                    continue
                pending = self.snapshots.get(handle.snapshot_id)
                if pending is None and not self.store.has_blob(handle.snapshot_id):
                    continue
                if gap:
                    parent = self._anchor(handle)
                data, state = pending if pending is not None else (self.store.blob(handle.snapshot_id), [])
                self.handles.remove(handle)
                progress = True
                try:
                    node = self.store.append(
                        handle.session_id, data, parent=None if parent is None else parent.id, step=handle.step,
                        action=handle.action, source=handle.action_source, frame=handle.frame or None, state=state,
                        snapshot_id=handle.snapshot_id, gap=gap,
                    )  # fmt: skip
                except BranchCacheError as exc:
                    self.log("append", f"refused state step {handle.step} of {handle.session_id!r}: {exc}")
                    continue
                if gap and (parent is None or node.id != parent.id):  # (not the cursor's own state re-announced)
                    where = f"under {parent.id} (step {parent.step})" if parent else "as the first state this cache has"
                    self.log(
                        "resumed",
                        f"resumed session {handle.session_id!r}: the parent {handle.parent_snapshot_id[:12]} of state "
                        f"step {handle.step} was never recorded here (this cache was down or started late); "
                        f"recorded it as {node.id} {where}, labelled 'gap'",
                    )
                self.snapshots.pop(handle.snapshot_id, None)
                self.recorded += 1
                out.append(node)
        self.expire()
        return out

    def expire(self) -> None:
        now = time.monotonic()
        expired = [h for h in self.handles if now - h.received > self.pending_timeout]
        for handle in expired:
            self.handles.remove(handle)
            why = "its snapshot" if handle.snapshot_id not in self.snapshots else "its parent state"
            self.log(
                "expired",
                f"dropped StateHandle step {handle.step} of {handle.session_id!r}: {why} never arrived "
                f"within {self.pending_timeout:.0f} s",
            )
        if expired:
            self.drain()  # handles that waited on an expired one re-anchor now

    # -- requests ------------------------------------------------------------
    def list(self, what: str, session_id: str = "", branch_id: str = "") -> tuple[list[str], list[dict]]:
        """``sessions``; ``branches`` of a session; ``nodes`` a branch owns; ``trajectory`` of a branch;
        ``node`` / ``children`` of a node id (given in ``branch_id`` or ``session_id``)."""
        s = self.store
        if what == "sessions":
            items = [x.to_json() for x in s.sessions()]
        elif what == "branches":
            if not session_id:
                raise InvalidInputError("list branches needs a session_id")
            items = [x.to_json() for x in s.branches(session_id)]
        elif what in ("nodes", "trajectory"):
            if not branch_id:
                raise InvalidInputError(f"list {what} needs a branch_id")
            items = [n.to_json() for n in (s.nodes(branch_id) if what == "nodes" else s.trajectory(branch_id))]
        elif what in ("node", "children"):
            node_id = branch_id or session_id
            if not node_id:
                raise InvalidInputError(f"list {what} needs a node id (in branch_id)")
            items = [s.get(node_id).to_json()] if what == "node" else [n.to_json() for n in s.children(node_id)]
        else:
            raise InvalidInputError(f"unknown list target {what!r}; use one of {LIST_WHATS}")
        return [x["id"] for x in items], items

    def rollback(self, session_id: str = "", node_id: str = "", steps: int = 0) -> TreeNode:
        self.drain()  # states already received come first: the cursor must be where the world model is
        target = self.store.rollback_target(session_id=session_id or None, node_id=node_id or None, steps=steps)
        self.store.blob(target.snapshot, f"node {target.id} (snapshot)")  # refuse a state we could not restore
        ok, message = self.restore(target.snapshot)
        if not ok:
            raise BranchCacheError(f"world model refused to restore {target.id}: {message}")
        self.store.move_cursor(target.id)
        return target

    def fork(self, node_id: str, label: str = "") -> str:
        self.drain()
        node = self.store.get(node_id)
        if self.fork_restores:
            ok, message = self.restore(node.snapshot)
            if not ok:
                raise BranchCacheError(f"world model refused to restore {node.id} for the fork: {message}")
        return self.store.fork(node.id, label).id

    def label(self, target_id: str, labels: Sequence[str]) -> list[str]:
        if not labels:
            raise InvalidInputError("label needs at least one label")
        parse_id(target_id, "b" if target_id.startswith("b") else "n")
        return self.store.label(target_id, labels)

    def export_dir(self, output_dir: str) -> Path:
        """Where an export request may write: a new or empty folder under ``export_root`` (a relative
        ``output_dir`` is taken from there), or a dataset this cache exported into before."""
        if not output_dir:
            raise InvalidInputError("export needs an output_dir")
        root = self.export_root.resolve()
        target = (root / output_dir).resolve()  # an absolute output_dir stays absolute
        if target != root and root not in target.parents:
            raise InvalidInputError(f"export output_dir {output_dir!r} is outside the export root {root}")
        if target.exists():
            if not target.is_dir():
                raise InvalidInputError(f"export output_dir {target} is not a folder")
            if any(target.iterdir()) and not (target / LINEAGE_PATH).is_file():
                raise InvalidInputError(
                    f"export output_dir {target} is neither empty nor a dataset exported from a branch cache"
                )
        return target

    def export(self, branch_ids: Sequence[str], output_dir: str) -> tuple[int, int, list[str]]:
        """(episodes, frames, branches skipped because the dataset already holds them)."""
        target = self.export_dir(output_dir)
        self.drain()
        target.parent.mkdir(parents=True, exist_ok=True)
        result = export_branches(
            self.store, list(branch_ids), target, fps=self.export_fps or None, task=self.task,
            instruction=self.instruction, progress=False,
        )  # fmt: skip
        return result.episodes, result.frames, result.skipped


def details(items: list[dict]) -> list[str]:
    return [json.dumps(x, sort_keys=True) for x in items]


def as_handle(msg: Any) -> StateHandle:
    """A StateHandle message as the fields the cache uses."""
    return StateHandle(
        session_id=str(msg.session_id),
        snapshot_id=str(msg.snapshot_id),
        parent_snapshot_id=str(msg.parent_snapshot_id),
        step=int(msg.step),
        action_source=int(msg.action_source),
        action=[float(v) for v in msg.action],
        frame=bytes(memoryview(msg.thumbnail_png)),
    )
