"""The branch cache's logic behind its node, without middleware: record states, answer requests.

Recording: the world-model node publishes, for every step, a StateSnapshot (the bytes) and a
StateHandle (what it is: session, step, parent, action, source, frame). They arrive on two topics
in any order, so both wait in memory until they pair up (and until the parent state is recorded);
a handle is then one store ``append``. The parent of a handle is the node holding
``parent_snapshot_id`` in its session: the session cursor when it holds it (the usual case, and the
one that keeps a fresh fork's steps on the fork), else the newest node with that snapshot.

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
from typing import Any

from hiwm.branch_cache.export import DEFAULT_TASK, export_branches
from hiwm.branch_cache.store import (
    SOURCES,
    BranchCacheError,
    BranchStore,
    InvalidInputError,
    TreeNode,
    parse_id,
)

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
        fork_restores: bool = True,
        export_fps: int = 10,
        task: str = DEFAULT_TASK,
        log: Callable[[str, str], None] | None = None,
    ) -> None:
        self.store, self.restore = store, restore
        self.max_pending, self.pending_timeout = max_pending, pending_timeout
        self.max_pending_snapshots = max_pending_snapshots
        self.fork_restores, self.export_fps, self.task = fork_restores, export_fps, task
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

    def drain(self) -> list[TreeNode]:
        """Record every waiting handle whose snapshot and parent are there; repeat until none moves."""
        out: list[TreeNode] = []
        progress = True
        while progress and self.handles:
            progress = False
            for handle in list(self.handles):
                parent = self._parent(handle)
                if parent is False:
                    continue
                pending = self.snapshots.get(handle.snapshot_id)
                if pending is None and not self.store.has_blob(handle.snapshot_id):
                    continue
                data, state = pending if pending is not None else (self.store.blob(handle.snapshot_id), [])
                self.handles.remove(handle)
                progress = True
                try:
                    node = self.store.append(
                        handle.session_id, data, parent=None if parent is None else parent.id, step=handle.step,
                        action=handle.action, source=handle.action_source, frame=handle.frame or None, state=state,
                        snapshot_id=handle.snapshot_id,
                    )  # fmt: skip
                except BranchCacheError as exc:
                    self.log("append", f"refused state step {handle.step} of {handle.session_id!r}: {exc}")
                    continue
                self.snapshots.pop(handle.snapshot_id, None)
                self.recorded += 1
                out.append(node)
        self.expire()
        return out

    def expire(self) -> None:
        now = time.monotonic()
        for handle in [h for h in self.handles if now - h.received > self.pending_timeout]:
            self.handles.remove(handle)
            why = "its snapshot" if handle.snapshot_id not in self.snapshots else "its parent state"
            self.log(
                "expired",
                f"dropped StateHandle step {handle.step} of {handle.session_id!r}: {why} never arrived "
                f"within {self.pending_timeout:.0f} s",
            )

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

    def export(self, branch_ids: Sequence[str], output_dir: str) -> tuple[int, int]:
        if not output_dir:
            raise InvalidInputError("export needs an output_dir")
        self.drain()
        result = export_branches(
            self.store, list(branch_ids), output_dir, fps=self.export_fps, task=self.task, progress=False
        )
        return result.episodes, result.frames


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
