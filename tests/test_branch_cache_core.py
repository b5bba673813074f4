"""The branch cache core without middleware: pairing handles and snapshots in any order, refusals."""

from __future__ import annotations

import json

import pytest

from hiwm.branch_cache.core import BadInput, BranchCacheCore, StateHandle
from hiwm.branch_cache.store import BranchCacheError, BranchStore, blob_id


def states(n: int) -> list[tuple[StateHandle, bytes]]:
    out, parent = [], ""
    for step in range(n):
        data = json.dumps({"t": step}).encode()
        sid = blob_id(data)
        action = [] if step == 0 else [1.0, 2.0]
        out.append((StateHandle("s", sid, parent, step, 0 if step < 3 else 1, action, b""), data))
        parent = sid
    return out


@pytest.fixture
def core(tmp_path):
    asked: list[str] = []
    logs: list[str] = []

    def restore(snapshot_id: str) -> tuple[bool, str]:
        asked.append(snapshot_id)
        return snapshot_id != "refuse", "ok"

    with BranchStore(tmp_path / "cache.db") as store:
        c = BranchCacheCore(store, restore, log=lambda key, msg: logs.append(msg), pending_timeout=60)
        c.asked, c.logs = asked, logs
        yield c


def test_any_arrival_order_records_every_state_in_its_place(core):
    seq = states(6)
    # handles first (children before parents), snapshots after, in reverse
    for handle, _ in reversed(seq):
        assert core.on_state(handle) == []
    for handle, data in reversed(seq):
        core.on_snapshot("s", handle.snapshot_id, data, [float(handle.step), 0.0])
    assert core.recorded == 6 and not core.handles and not core.snapshots
    traj = core.store.trajectory(core.store.session("s").root_branch)
    assert [n.step for n in traj] == list(range(6)) and [n.source for n in traj[1:]] == [0, 0, 1, 1, 1]
    assert [n.state for n in traj] == [[float(s), 0.0] for s in range(6)]


def test_rollback_restores_then_moves_the_cursor_and_refusals_change_nothing(core):
    for handle, data in states(5):
        core.on_snapshot("s", handle.snapshot_id, data, [0.0, 0.0])
        core.on_state(handle)
    target = core.rollback("s", steps=3)
    assert target.step == 1 and core.asked == [target.snapshot]
    assert core.store.session("s").cursor_node == target.id
    core.restore = lambda sid: (False, "world model busy")
    with pytest.raises(BranchCacheError, match="world model busy"):
        core.rollback("s", steps=1)
    assert core.store.session("s").cursor_node == target.id  # unchanged
    with pytest.raises(BranchCacheError, match="refused to restore"):
        core.fork(target.id, "corrected")
    assert len(core.store.branches("s")) == 1


def test_bad_messages_are_refused(core):
    (handle, data), *_ = states(1)
    with pytest.raises(BadInput, match="not the sha256"):
        core.on_snapshot("s", "0" * 64, data, [])
    with pytest.raises(BadInput, match="not finite"):
        core.on_snapshot("s", handle.snapshot_id, data, [float("inf")])
    with pytest.raises(BadInput, match="action_source"):
        core.on_state(StateHandle("s", handle.snapshot_id, "", 0, 9, [], b""))
    with pytest.raises(BadInput, match="not finite"):
        core.on_state(StateHandle("s", handle.snapshot_id, "", 0, 0, [float("nan")], b""))
    with pytest.raises(BadInput, match="without session_id"):
        core.on_state(StateHandle("", handle.snapshot_id, "", 0, 0, [], b""))
    # a handle whose snapshot never comes is dropped after the timeout, with a log line
    core.pending_timeout = -1.0  # already expired
    core.on_state(handle)
    assert not core.handles and any("never arrived" in m for m in core.logs)
    assert core.store.stats()["nodes"] == 0


def test_a_state_whose_parent_never_comes_re_anchors_its_session(core):
    core.resume_after = 0.0  # no grace: the test feeds messages in order
    seq = states(8)
    for handle, data in seq[:3]:
        core.on_snapshot("s", handle.snapshot_id, data, [float(handle.step), 0.0])
        core.on_state(handle)
    # steps 3 and 4 never arrive; step 5's handle comes without its snapshot (sent before we listened)
    core.on_state(seq[5][0])
    for handle, data in seq[6:]:
        core.on_snapshot("s", handle.snapshot_id, data, [float(handle.step), 0.0])
        core.on_state(handle)
    assert not core.handles and core.recorded == 5
    traj = core.store.trajectory(core.store.session("s").root_branch)
    assert [n.step for n in traj] == [0, 1, 2, 6, 7]
    assert traj[3].parent == traj[2].id and traj[3].labels == ["gap"] and traj[4].labels == []
    assert any("snapshot was published before" in m for m in core.logs)
    assert any("resumed session 's'" in m and traj[3].id in m for m in core.logs)
    # a session the store never saw starts at the first state that reaches it, marked too
    late = StateHandle("t", seq[1][0].snapshot_id, seq[0][0].snapshot_id, 1, 0, [1.0, 2.0], b"")
    (node,) = core.on_state(late)
    assert node.parent is None and node.labels == ["gap"] and core.store.session("t").cursor_node == node.id
