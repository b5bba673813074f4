"""The branch cache node over DDS with a world-model peer process: record, roll back, fork, label, export."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hiwm.branch_cache.store import BranchStore
from hiwm.comm import create_node, new_message
from hiwm.comm.qos import KEEP_ALL
from hiwm.data.lerobot import LeRobotDataset

SERVICES = ("List", "Rollback", "Fork", "Label", "Export")


class Operator:
    """The test's side: drives the world-model peer and calls the cache's services."""

    def __init__(self, node) -> None:
        self.node = node
        self.command = node.create_publisher("hiwm_msgs/msg/ActionChunk", "/robot/command", KEEP_ALL)
        self.reset_client = node.create_client("hiwm_msgs/srv/Reset", "/world_model/reset")
        self.restores_client = node.create_client("std_srvs/srv/Trigger", "/world_model_peer/restores")
        self.clients = {n: node.create_client(f"hiwm_msgs/srv/{n}", f"/branch_cache/{n.lower()}") for n in SERVICES}
        self.bad_snapshot = node.create_publisher("hiwm_msgs/msg/StateSnapshot", "/world_model/snapshot", KEEP_ALL)
        self.bad_state = node.create_publisher("hiwm_msgs/msg/StateHandle", "/world_model/state", KEEP_ALL)

    def call(self, name: str, **fields):
        return self.clients[name].call(new_message(f"hiwm_msgs/srv/{name}_Request", **fields), timeout=20.0)

    def act(self, actions, source: int) -> None:
        data = np.asarray(actions, np.float32)
        self.command.publish(
            new_message(
                "hiwm_msgs/msg/ActionChunk", header=self.node.header(), source=source, source_id="test",
                horizon=len(data), action_dim=2, dt=0.1, data=data.reshape(-1),
            )
        )  # fmt: skip

    def nodes(self, what: str, **ids) -> list[dict]:
        response = self.call("List", what=what, **ids)
        assert response.success, response.message
        return [json.loads(d) for d in response.details_json]

    def wait_nodes(self, session: str, n: int) -> bool:
        def count() -> int:
            sessions = {s["id"]: s for s in self.nodes("sessions")}
            return sessions.get(session, {}).get("nodes", 0)

        return self.node.spin_until(lambda: count() >= n, 20.0) and count() == n

    def restores(self) -> list[str]:
        r = self.restores_client.call(new_message("std_srvs/srv/Trigger_Request"), timeout=10.0)
        return json.loads(r.message)


@pytest.fixture
def system(procs, tmp_path):
    db = tmp_path / "cache.db"
    peer = procs.python("tests.peers.world_model_peer")
    cache = procs.python("hiwm.nodes.branch_cache", "--ros-args", "-p", f"db:={db}")
    node = create_node("branch_cache_test")
    op = Operator(node)
    for client in [op.reset_client, op.restores_client, *op.clients.values()]:
        assert client.wait_for_service(30.0), procs.output(cache) + procs.output(peer)
    node.spin_until(lambda: op.command.matched_count() > 0, 10.0)
    yield op, db
    node.destroy()
    assert cache.poll() is None, "the branch cache died:\n" + procs.output(cache)
    assert peer.poll() is None, "the peer died:\n" + procs.output(peer)


def test_rollout_rollback_fork_label_export_through_services(system, tmp_path):
    op, db = system
    assert op.reset_client.call(new_message("hiwm_msgs/srv/Reset_Request", seed=7), timeout=10.0).success
    op.act([[1.0, 0.5]] * 20, source=0)  # a 20-step policy rollout
    assert op.wait_nodes("sess-7", 21)
    (main,) = op.nodes("branches", session_id="sess-7")
    traj = op.nodes("trajectory", branch_id=main["id"])
    assert [n["step"] for n in traj] == list(range(21)) and {n["source_name"] for n in traj[1:]} == {"policy"}

    # roll back ten steps: the cache restores the world model (the peer records the request)
    back = op.call("Rollback", session_id="sess-7", steps=10)
    assert back.success, back.message
    assert back.node_id == traj[10]["id"] and back.snapshot_id == traj[10]["snapshot"]
    assert op.restores() == [traj[10]["snapshot"]]

    # replaying the same actions from there reproduces the first pass: the same nodes, nothing new
    op.act([[1.0, 0.5]] * 10, source=0)

    def cursor() -> str:
        return {s["id"]: s for s in op.nodes("sessions")}["sess-7"]["cursor_node"]

    assert op.node.spin_until(lambda: cursor() == traj[20]["id"], 20.0), cursor()
    assert [n["id"] for n in op.nodes("trajectory", branch_id=main["id"])] == [n["id"] for n in traj]
    assert len(op.nodes("branches", session_id="sess-7")) == 1 and op.wait_nodes("sess-7", 21)
    back = op.call("Rollback", session_id="sess-7", steps=10)
    assert back.success and back.node_id == traj[10]["id"], back.message

    # three corrections forked from that state, each restoring it first
    forks = []
    for k in range(3):
        fork = op.call("Fork", node_id=back.node_id, label="corrected")
        assert fork.success, fork.message
        op.act([[0.0, 1.0 + k]] * 4, source=1)
        assert op.wait_nodes("sess-7", 21 + 4 * (k + 1))
        owned = op.nodes("nodes", branch_id=fork.branch_id)
        assert [n["step"] for n in owned] == [11, 12, 13, 14] and {n["source_name"] for n in owned} == {"human"}
        assert owned[0]["parent"] == back.node_id
        forks.append(fork.branch_id)
    assert op.restores() == [traj[10]["snapshot"]] * 5
    # the main branch is untouched by the forks
    assert [n["id"] for n in op.nodes("trajectory", branch_id=main["id"])] == [n["id"] for n in traj]

    assert op.call("Label", branch_id=main["id"], labels=["failure-prone", "failure"]).success
    for b in forks:
        assert op.call("Label", branch_id=b, labels=["success"]).success
    (node,) = op.nodes("node", branch_id=back.node_id)
    assert node["step"] == 10

    out = tmp_path / "exports" / "corrections"  # exports go under the cache's export root (next to its store)
    exported = op.call("Export", branch_ids=forks, output_dir="corrections")
    assert exported.success, exported.message
    assert (exported.episodes, exported.frames) == (3, 3 * 14)
    ds = LeRobotDataset(out)
    ep = ds.episode(2, videos=False)
    assert ep["intervention"].tolist() == [False] * 10 + [True] * 4
    assert ep["action"][-1].tolist() == [0.0, 3.0]
    lineage = json.loads((out / "meta" / "branch_lineage.json").read_text())
    assert [b["fork_node"] for b in lineage["branches"]] == [back.node_id] * 3

    # the store on disk (read while the node runs) holds the same tree
    with BranchStore(db, readonly=True) as store:
        assert store.stats()["nodes"] == 33 and len(store.branches("sess-7")) == 4
        assert store.branch(forks[0]).labels == ["corrected", "success"]


def test_bad_input_and_unknown_ids_are_refused_and_the_node_keeps_running(system):
    op, _ = system
    assert op.reset_client.call(new_message("hiwm_msgs/srv/Reset_Request", seed=3), timeout=10.0).success
    op.act([[1.0, 1.0]] * 3, source=0)
    assert op.wait_nodes("sess-3", 4)
    # a snapshot whose id is not its hash, and a handle with a NaN action: refused, nothing recorded
    op.bad_snapshot.publish(
        new_message("hiwm_msgs/msg/StateSnapshot", session_id="sess-3", snapshot_id="f" * 64, data=np.ones(8, np.uint8))
    )
    op.bad_state.publish(
        new_message(
            "hiwm_msgs/msg/StateHandle", session_id="sess-3", snapshot_id="f" * 64, step=9,
            action=np.array([np.nan, 0.0], np.float32),
        )
    )  # fmt: skip
    for name, fields, expect in (
        ("Rollback", {"node_id": "n999"}, "no node n999"),
        ("Rollback", {"session_id": "sess-3", "steps": 50}, "cannot go back 50 steps"),
        ("Rollback", {"session_id": "nope", "steps": 1}, "no session 'nope'"),
        ("Fork", {"node_id": "x1"}, "malformed node id"),
        ("Label", {"branch_id": "b77", "labels": ["success"]}, "no branch b77"),
        ("Label", {"branch_id": "b1", "labels": ["Not OK"]}, "invalid label"),
        ("List", {"what": "everything"}, "unknown list target"),
        ("Export", {"branch_ids": ["b55"], "output_dir": "never"}, "no branch b55"),
    ):
        response = op.call(name, **fields)
        assert not response.success and expect in response.message, (name, response.message)
    # still recording
    op.act([[1.0, 1.0]] * 2, source=2)
    assert op.wait_nodes("sess-3", 6)
    (branch,) = op.nodes("branches", session_id="sess-3")
    assert [n["source_name"] for n in op.nodes("nodes", branch_id=branch["id"])][-2:] == ["scripted", "scripted"]


def test_kill9_of_the_node_while_recording_loses_no_state_it_reported(procs, tmp_path):
    import random
    import signal
    import time

    db = tmp_path / "cache.db"
    procs.python("tests.peers.world_model_peer")
    node = create_node("branch_cache_kill_test")
    op = Operator(node)
    assert op.reset_client.wait_for_service(30.0)
    rng = random.Random(5)
    reported: set[str] = set()
    try:
        for trial in range(4):
            cache = procs.python("hiwm.nodes.branch_cache", "--ros-args", "-p", f"db:={db}")
            assert node.spin_until(lambda c=cache: "running on the" in procs.output(c), 30.0), procs.output(cache)
            assert node.spin_until(lambda: op.clients["List"].service_is_ready(), 10.0)
            node.spin_until(lambda: op.command.matched_count() > 0, 10.0)
            session = f"sess-{100 + trial}"
            assert op.reset_client.call(
                new_message("hiwm_msgs/srv/Reset_Request", seed=100 + trial), timeout=10
            ).success
            for _ in range(30):
                op.act([[0.1, 0.2]] * 10, source=trial % 3)
            # what the node reports as recorded (answered from its store), then a kill mid-stream
            assert op.node.spin_until(lambda s=session: s in _sessions(op), 20.0)
            (branch,) = op.nodes("branches", session_id=session)
            reported.update(n["id"] for n in op.nodes("trajectory", branch_id=branch["id"]))
            time.sleep(rng.uniform(0.0, 0.3))
            cache.send_signal(signal.SIGKILL)
            cache.wait()
            with BranchStore(db, readonly=True, check="full") as store:
                present = {n.id for s in store.sessions() for n in store.all_nodes(s.id)}
            assert reported <= present, f"trial {trial}: lost {sorted(reported - present)[:10]}"
    finally:
        node.destroy()
    assert len(reported) > 40


def _sessions(op: Operator) -> dict:
    return {s["id"]: s for s in op.nodes("sessions")}


@pytest.mark.probe("kill -9 the branch cache mid-session, publish 5 states while it is down, restart it",
                   "the next state re-anchors the session (a logged gap); later states recorded, exported")  # fmt: skip
def test_a_restarted_cache_resumes_the_session_and_exports_it(procs, tmp_path):
    import signal
    import time

    db = tmp_path / "cache.db"
    peer = procs.python("tests.peers.world_model_peer")
    node = create_node("branch_cache_resume_test")
    op = Operator(node)

    def start_cache():
        cache = procs.python("hiwm.nodes.branch_cache", "--ros-args", "-p", f"db:={db}", "-p", "resume_after:=0.5")
        assert node.spin_until(lambda: "running on the" in procs.output(cache), 30.0), procs.output(cache)
        assert node.spin_until(lambda: op.clients["List"].service_is_ready(), 20.0), procs.output(cache)
        node.spin_until(lambda: False, 3.0)  # the cache's readers and the peer's writers find each other
        return cache

    try:
        assert op.reset_client.wait_for_service(30.0), procs.output(peer)
        node.spin_until(lambda: op.command.matched_count() > 0, 10.0)
        cache = start_cache()
        assert op.reset_client.call(new_message("hiwm_msgs/srv/Reset_Request", seed=21), timeout=10.0).success
        op.act([[1.0, 0.0]] * 10, source=0)
        assert op.wait_nodes("sess-21", 11)
        cache.send_signal(signal.SIGKILL)
        cache.wait()
        op.act([[1.0, 0.0]] * 5, source=0)  # steps 11-15: nobody records them
        time.sleep(1.0)
        cache = start_cache()
        op.act([[0.0, 2.0]] * 6, source=1)  # steps 16-21: the operator's correction after the restart

        def head_step() -> int:
            (branch,) = op.nodes("branches", session_id="sess-21")
            return op.nodes("node", branch_id=branch["head_node"])[0]["step"]

        assert op.node.spin_until(lambda: head_step() == 21, 30.0), (_sessions(op), procs.output(cache))
        (branch,) = op.nodes("branches", session_id="sess-21")
        traj = op.nodes("trajectory", branch_id=branch["id"])
        steps = [n["step"] for n in traj]
        # the first states after the restart may precede the cache's readers matching: those are gone too
        resumed = steps[11]
        assert steps == [*range(11), *range(resumed, 22)] and 16 <= resumed <= 19, steps
        gap = traj[11]
        assert gap["labels"] == ["gap"] and gap["parent"] == traj[10]["id"], gap
        assert [n["labels"] for n in traj[12:]] == [[]] * 5 and {n["source_name"] for n in traj[11:]} == {"human"}
        log = procs.output(cache)
        assert "resumed session 'sess-21'" in log and gap["id"] in log, log

        exported = op.call("Export", branch_ids=[branch["id"]], output_dir="resumed")
        assert exported.success, exported.message
        after = 21 - resumed  # frames after the gap
        assert (exported.episodes, exported.frames) == (1, 10 + after)  # every pair but the one across the gap
        ds = LeRobotDataset(tmp_path / "exports" / "resumed")
        ep = ds.episode(0, videos=False)
        assert ep["intervention"].tolist() == [False] * 10 + [True] * after
        assert ep["action"][-1].tolist() == [0.0, 2.0]
        lineage = json.loads((tmp_path / "exports" / "resumed" / "meta" / "branch_lineage.json").read_text())
        assert lineage["episodes"][0]["gaps"] == [gap["id"]]
        again = op.call("Export", branch_ids=[branch["id"]], output_dir="resumed")  # the same branch twice
        assert again.success and again.episodes == 0 and "already exported" in again.message, again.message
        assert LeRobotDataset(tmp_path / "exports" / "resumed").num_episodes == 1
        assert cache.poll() is None and peer.poll() is None
    finally:
        node.destroy()


@pytest.mark.probe("branch_cache/export into /tmp, ../, a symlink out of the root and a non-empty folder",
                   "refused; only new or empty folders under the export root (or its own exports)")  # fmt: skip
def test_export_only_under_its_root_into_new_or_empty_folders(system, tmp_path):
    op, _ = system
    assert op.reset_client.call(new_message("hiwm_msgs/srv/Reset_Request", seed=4), timeout=10.0).success
    op.act([[1.0, 1.0]] * 3, source=0)
    assert op.wait_nodes("sess-4", 4)
    (branch,) = op.nodes("branches", session_id="sess-4")
    root = tmp_path / "exports"
    (root / "full").mkdir(parents=True)
    (root / "full" / "notes.txt").write_text("keep me")
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    for output_dir, expect in (
        (str(tmp_path / "elsewhere"), "outside the export root"),
        ("../escaped", "outside the export root"),
        ("link/ds", "outside the export root"),
        ("full", "neither empty nor a dataset"),
        ("", "needs an output_dir"),
    ):
        response = op.call("Export", branch_ids=[branch["id"]], output_dir=output_dir)
        assert not response.success and expect in response.message, (output_dir, response.message)
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "escaped").exists()
    assert list(outside.iterdir()) == [] and sorted(p.name for p in (root / "full").iterdir()) == ["notes.txt"]
    (root / "empty").mkdir()
    ok = op.call("Export", branch_ids=[branch["id"]], output_dir="empty")
    assert ok.success and ok.episodes == 1, ok.message


@pytest.mark.probe("branch_cache/fork and rollback with no world model on the graph",
                   "refused at once, naming the missing world_model/restore service")  # fmt: skip
def test_fork_without_a_world_model_says_so_at_once(procs, tmp_path):
    import time

    db = tmp_path / "cache.db"
    with BranchStore(db) as store:
        first = store.append("s", b"state-0", step=0)
        store.append("s", b"state-1", parent=first.id, step=1, action=[1.0, 1.0])
    cache = procs.python("hiwm.nodes.branch_cache", "--ros-args", "-p", f"db:={db}", "-p", "restore_timeout:=30.0")
    node = create_node("branch_cache_no_world_test")
    op = Operator(node)
    try:
        assert op.clients["Fork"].wait_for_service(30.0), procs.output(cache)
        requests = (("Fork", {"node_id": first.id, "label": "fix"}), ("Rollback", {"session_id": "s", "steps": 1}))
        for name, fields in requests:
            start = time.monotonic()
            response = op.call(name, **fields)
            elapsed = time.monotonic() - start
            assert not response.success and "no world model serves" in response.message, response.message
            assert "world_model/restore" in response.message and elapsed < 15.0, (name, elapsed)
        with BranchStore(db, readonly=True) as store:
            assert len(store.branches("s")) == 1 and store.session("s").cursor_node == "n2"  # nothing changed
        assert cache.poll() is None
    finally:
        node.destroy()
