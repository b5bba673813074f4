"""The branch cache store on real SQLite files: tree operations, replay, forks, bad input, damage, kill -9."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from hiwm.branch_cache.store import (
    SOURCE_HUMAN,
    SOURCE_POLICY,
    BlobMissingError,
    BranchStore,
    CorruptStoreError,
    InvalidInputError,
    UnknownIdError,
    blob_id,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def world_step(snapshot: bytes, action: list[float]) -> tuple[bytes, bytes]:
    """A deterministic toy world: the snapshot is its state; returns (next snapshot, next frame)."""
    state = json.loads(snapshot)
    state = {"x": round(state["x"] + action[0], 6), "y": round(state["y"] + action[1], 6), "t": state["t"] + 1}
    return json.dumps(state, sort_keys=True).encode(), f"frame {state}".encode()


def rollout(store: BranchStore, session: str, start, actions, source: int = SOURCE_POLICY):
    node, snap = start
    out = []
    for action in actions:
        snap, frame = world_step(snap, action)
        node = store.append(
            session, snap, parent=node.id, step=node.step + 1, action=action, source=source, frame=frame, state=action
        )
        out.append(node)
    return out


def first(store: BranchStore, session: str = "s"):
    snap = json.dumps({"t": 0, "x": 0.0, "y": 0.0}, sort_keys=True).encode()
    return store.append(session, snap, frame=b"frame0"), snap


@pytest.fixture
def store(tmp_path):
    s = BranchStore(tmp_path / "cache.db")
    yield s
    s.close()


ACTIONS = [[float(i), float(-i) / 2] for i in range(1, 21)]


def test_append_get_children_path(store):
    root, _ = first(store)
    nodes = rollout(store, "s", (root, json.dumps({"t": 0, "x": 0.0, "y": 0.0}, sort_keys=True).encode()), ACTIONS)
    assert [n.step for n in nodes] == list(range(1, 21))
    assert store.get(nodes[4].id) == nodes[4]
    assert [c.id for c in store.children(root.id)] == [nodes[0].id]
    path = store.path_to_root(nodes[-1].id)
    assert [n.id for n in path] == [n.id for n in nodes[::-1]] + [root.id]
    assert store.frame(nodes[0].id) == world_step(store.snapshot(root.id), ACTIONS[0])[1]
    (session,) = store.sessions()
    assert session.id == "s" and session.nodes == 21 and session.cursor_node == nodes[-1].id
    assert len(store.branches("s")) == 1 and store.branch(session.root_branch).length == 21


def test_rollback_then_replay_gives_the_same_nodes_and_snapshots(store):
    start = first(store)
    first_pass = rollout(store, "s", start, ACTIONS)
    node, snap = store.rollback(session_id="s", steps=10)
    assert node.id == first_pass[9].id and blob_id(snap) == node.snapshot
    assert store.session("s").cursor_node == node.id
    replay = rollout(store, "s", (node, snap), ACTIONS[10:])
    assert [n.id for n in replay] == [n.id for n in first_pass[10:]]
    assert [store.snapshot(n.id) for n in replay] == [store.snapshot(n.id) for n in first_pass[10:]]
    assert [store.frame(n.id) for n in replay] == [store.frame(n.id) for n in first_pass[10:]]
    assert len(store.branches("s")) == 1  # nothing duplicated
    # a different action after a rollback is a new branch, based at the rollback node
    node, snap = store.rollback(session_id="s", node_id=first_pass[4].id)
    (diverged,) = rollout(store, "s", (node, snap), [[100.0, 100.0]])
    branch = store.branch(diverged.branch)
    assert branch.base_node == first_pass[4].id and branch.parent_branch == first_pass[4].branch
    assert diverged.parent == first_pass[4].id


def test_fork_from_mid_episode_gives_two_independent_branches(store):
    start = first(store)
    main = rollout(store, "s", start, ACTIONS)
    mid = main[9]
    fork = store.fork(mid.id, "corrected")
    assert fork.base_node == mid.id and fork.length == 0 and fork.labels == ["corrected"]
    snap = store.snapshot(mid.id)
    corrected = rollout(store, "s", (mid, snap), [[0.5, 0.5]] * 5, source=SOURCE_HUMAN)
    assert {n.branch for n in corrected} == {fork.id}
    # the two branches share the prefix and nothing else
    main_traj = [n.id for n in store.trajectory(main[0].branch)]
    fork_traj = [n.id for n in store.trajectory(fork.id)]
    assert main_traj == [start[0].id] + [n.id for n in main]
    assert fork_traj == main_traj[:11] + [n.id for n in corrected]
    assert store.children(mid.id)[0].id == main[10].id and len(store.children(mid.id)) == 2
    # labels are per branch; a second fork from the same node is a third branch
    store.label(main[0].branch, ["failure"])
    store.label(fork.id, ["success"])
    assert store.branch(main[0].branch).labels == ["failure"]
    assert store.branch(fork.id).labels == ["corrected", "success"]
    other = store.fork(mid.id, "corrected")
    again = rollout(store, "s", (mid, snap), [[0.5, 0.5]] * 2, source=SOURCE_HUMAN)
    assert {n.branch for n in again} == {other.id} and other.id != fork.id
    assert len(store.branches("s")) == 3


def test_unknown_ids_give_clear_errors(store):
    first(store)
    with pytest.raises(UnknownIdError, match="no node n999"):
        store.get("n999")
    with pytest.raises(UnknownIdError, match="no branch b42"):
        store.branch("b42")
    with pytest.raises(UnknownIdError, match="no session 'nope'"):
        store.session("nope")
    with pytest.raises(UnknownIdError, match="malformed node id"):
        store.get("b1")
    with pytest.raises(UnknownIdError, match="malformed branch id"):
        store.nodes("zz")
    with pytest.raises(UnknownIdError):
        store.label("n77", ["success"])
    with pytest.raises(InvalidInputError, match="cannot go back 5 steps"):
        store.rollback(session_id="s", steps=5)
    with pytest.raises(UnknownIdError):
        store.append("s", b"x", parent="n555", step=1)


def test_bad_input_is_refused_and_loses_nothing(store):
    root, _ = first(store)
    with pytest.raises(InvalidInputError, match="NaN"):
        store.append("s", b"a", parent=root.id, step=1, action=[float("nan"), 0.0])
    with pytest.raises(InvalidInputError, match="source"):
        store.append("s", b"a", parent=root.id, step=1, source=7)
    with pytest.raises(InvalidInputError, match="not the sha256"):
        store.append("s", b"a", parent=root.id, step=1, snapshot_id="0" * 64)
    with pytest.raises(InvalidInputError, match="invalid label"):
        store.label("b1", ["Bad Label!"])
    with pytest.raises(InvalidInputError, match="already has a first state"):
        store.append("s", b"other first", step=0)
    assert store.stats()["nodes"] == 1 and store.check().ok


def test_deleted_blob_is_reported_on_open_and_on_read(tmp_path):
    path = tmp_path / "cache.db"
    with BranchStore(path) as store:
        root, _ = first(store)
        (n1,) = rollout(store, "s", (root, store.snapshot(root.id)), ACTIONS[:1])
    db = sqlite3.connect(path)
    db.execute("DELETE FROM blobs WHERE id=?", (n1.snapshot,))
    db.commit()
    db.close()
    with pytest.raises(CorruptStoreError, match=f"node {n1.id} : snapshot blob {n1.snapshot} is missing"):
        BranchStore(path)
    with BranchStore(path, check=None) as store:
        assert store.snapshot(root.id)  # the rest is readable
        with pytest.raises(BlobMissingError, match=f"blob {n1.snapshot} of node {n1.id}"):
            store.snapshot(n1.id)
        with pytest.raises(BlobMissingError):
            store.rollback(node_id=n1.id)


def test_corrupt_files_give_clear_errors(tmp_path):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CorruptStoreError, match="not a readable branch cache store"):
        BranchStore(garbage)
    with pytest.raises(UnknownIdError, match="no branch cache store"):
        BranchStore(tmp_path / "absent.db", readonly=True)
    # a damaged blob (bytes changed under its hash) and a dangling parent
    path = tmp_path / "cache.db"
    with BranchStore(path) as store:
        root, _ = first(store)
        nodes = rollout(store, "s", (root, store.snapshot(root.id)), ACTIONS[:3])
    db = sqlite3.connect(path)
    db.execute("UPDATE blobs SET data=? WHERE id=?", (b"tampered", nodes[0].snapshot))
    db.execute("UPDATE nodes SET parent=9999 WHERE id=?", (int(nodes[2].id[1:]),))
    db.commit()
    db.close()
    with pytest.raises(CorruptStoreError, match="parent n9999 does not exist"):
        BranchStore(path)
    with BranchStore(path, check=None) as store:
        report = store.check(full=True)
        assert any("does not match its hash" in p for p in report.problems), str(report)
        with pytest.raises(CorruptStoreError, match="corrupt"):
            store.snapshot(nodes[0].id)
    # a file cut in half: sqlite's own check (or the open) catches it
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CorruptStoreError):
        BranchStore(path)


def test_readers_run_while_one_writer_appends(tmp_path):
    path = tmp_path / "cache.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.join(ROOT, "src"), ROOT])}
    writer = subprocess.Popen(
        [sys.executable, "-m", "tests.peers.store_writer", str(path), "1"], stdout=subprocess.PIPE, env=env, cwd=ROOT
    )
    try:
        seen = 0
        deadline = time.monotonic() + 20
        while seen < 200 and time.monotonic() < deadline:
            if not path.exists():
                time.sleep(0.01)
                continue
            try:
                reader = BranchStore(path, readonly=True, check=None)
            except CorruptStoreError:  # the writer has not created the schema yet
                time.sleep(0.01)
                continue
            with reader:
                for branch in reader.branches():
                    traj = reader.trajectory(branch.id)
                    assert [n.step for n in traj] == list(range(len(traj)))
                seen = reader.stats()["nodes"]
        assert seen >= 200
    finally:
        writer.kill()
        writer.wait()


def test_kill9_at_random_moments_loses_no_committed_node(tmp_path):
    path = tmp_path / "cache.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.join(ROOT, "src"), ROOT])}
    rng = random.Random(1234)
    committed: dict[str, str] = {}
    for trial in range(50):
        writer = subprocess.Popen(
            [sys.executable, "-m", "tests.peers.store_writer", str(path), str(trial)],
            stdout=subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        time.sleep(rng.uniform(0.1, 0.45))  # the process takes ~0.15 s to start: some kills land in open()
        writer.send_signal(signal.SIGKILL)
        out = writer.communicate()[0].decode()
        lines = out.split("\n")[:-1]  # the last piece may be a line cut by the kill
        new = dict(line.split() for line in lines)
        committed.update(new)
        with BranchStore(path, check="full" if trial % 10 == 9 else "quick") as store:
            stored = {f"n{i}": snap for i, snap in store.db.execute("SELECT id, snapshot FROM nodes")}
            lost = {k: v for k, v in committed.items() if stored.get(k) != v}
            assert not lost, f"trial {trial}: committed nodes lost after kill -9: {sorted(lost)[:10]}"
            for node_id, snapshot in new.items():
                assert blob_id(store.snapshot(node_id)) == snapshot
    assert len(committed) > 500, "the writer should have committed many nodes across the trials"


def test_content_hash_is_fixed_per_store(tmp_path):
    import hashlib

    path = tmp_path / "cache.db"
    with BranchStore(path, hash_name="blake2b") as store:
        node = store.append("s", b"snap", snapshot_id=hashlib.blake2b(b"snap").hexdigest())
        assert node.snapshot == hashlib.blake2b(b"snap").hexdigest() and store.snapshot(node.id) == b"snap"
        with pytest.raises(InvalidInputError, match="not the blake2b"):
            store.append("s", b"next", parent=node.id, step=1, snapshot_id=blob_id(b"next"))
    with pytest.raises(InvalidInputError, match="addresses blobs by blake2b, not sha256"):
        BranchStore(path)
    with BranchStore(path, readonly=True) as store:
        assert store.hash_name == "blake2b" and store.check(full=True).ok
    with pytest.raises(InvalidInputError, match="unknown content hash"):
        BranchStore(tmp_path / "other.db", hash_name="crc32")
