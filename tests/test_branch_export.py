"""Exporting cache branches as LeRobot v3 episodes: intervention flags, action source, lineage, frames."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hiwm.branch_cache.export import LINEAGE_FEATURES, LINEAGE_PATH, encode_png, export_branches
from hiwm.branch_cache.store import SOURCE_HUMAN, SOURCE_POLICY, BranchStore, InvalidInputError
from hiwm.data.lerobot import DEFAULT_FEATURES, LeRobotDataset, read_tasks


def frame(step: int, size: int = 32) -> np.ndarray:
    image = np.zeros((size, size, 3), dtype=np.uint8)
    image[:, :, 0] = (step * 20) % 256
    image[: size // 2, :, 1] = 200
    return image


def add(store, parent, step, source, action):
    return store.append(
        "s", f"state {parent.id} {action}".encode(), parent=parent.id, step=step, action=action, source=source,
        frame=encode_png(frame(step)), state=[float(step), float(step)],
    )  # fmt: skip


@pytest.fixture
def store(tmp_path):
    with BranchStore(tmp_path / "cache.db") as s:
        yield s


def build(store):
    """A 10-step policy rollout, rolled back to step 6, and two human corrections forked from there."""
    node = store.append("s", b"state 0", frame=encode_png(frame(0)), state=[0.0, 0.0])
    main = [node]
    for step in range(1, 11):
        main.append(add(store, main[-1], step, SOURCE_POLICY, [float(step), 1.0]))
    store.label(main[-1].branch, ["failure"])
    failure_state, _ = store.rollback(session_id="s", steps=4)
    forks = []
    for k in range(2):
        branch = store.fork(failure_state.id, "corrected")
        node = failure_state
        for step in range(7, 10):
            node = add(store, node, step, SOURCE_HUMAN, [float(step), 10.0 + k])
        store.label(branch.id, ["success"])
        forks.append(branch.id)
    return main, failure_state, forks


def test_export_writes_episodes_with_intervention_source_and_lineage(store, tmp_path):
    main, failure_state, forks = build(store)
    out = tmp_path / "ds"
    result = export_branches(store, [main[0].branch, *forks], out, progress=False)
    assert (result.episodes, result.frames) == (3, 10 + 9 + 9)
    ds = LeRobotDataset(out)
    assert ds.num_episodes == 3 and ds.num_frames == 28
    # Push-T's layout as before (lerobot/pusht's names) with the lineage; its instruction
    from hiwm.tasks.pusht import PUSHT_TASK, pusht_features

    want = {**pusht_features(32, extras=False), **LINEAGE_FEATURES}
    assert {k: (f["dtype"], f["shape"], f["names"]) for k, f in ds.features.items() if k in want} == {
        k: (f["dtype"], f["shape"], f["names"]) for k, f in want.items()
    }
    assert set(ds.features) - set(want) == set(DEFAULT_FEATURES)
    assert read_tasks(out) == [PUSHT_TASK] and ds.info["robot_type"] == "pusht"
    lineage = json.loads((out / LINEAGE_PATH).read_text())
    ep = ds.episode(0)
    assert not ep["intervention"].any() and (ep["action.source"] == SOURCE_POLICY).all()
    assert ep["action"][:, 0].tolist() == [float(s) for s in range(1, 11)]
    assert lineage["branches"][int(ep["branch.lineage"][0])]["labels"] == ["failure"]
    for episode, branch_id in ((1, forks[0]), (2, forks[1])):
        ep = ds.episode(episode)
        # 6 policy frames shared with the main branch, then 3 human corrections after the fork
        assert ep["intervention"].tolist() == [False] * 6 + [True] * 3
        assert ep["action.source"].tolist() == [SOURCE_POLICY] * 6 + [SOURCE_HUMAN] * 3
        assert ep["branch.after_fork"].tolist() == [False] * 6 + [True] * 3
        entry = lineage["branches"][int(ep["branch.lineage"][0])]
        assert entry["branch_id"] == branch_id and entry["fork_node"] == failure_state.id
        assert entry["labels"] == ["corrected", "success"] and entry["ancestry"] == [branch_id, main[0].branch]
        assert lineage["episodes"][episode]["node_ids"][:7] == [n.id for n in main[:7]]
        # frames are the nodes' frames (lossy video: close, not equal)
        video = ep["observation.image"]
        expected = np.stack([frame(s) for s in range(9)])
        assert video.shape == expected.shape and np.abs(video.astype(int) - expected).mean() < 6
        assert ep["observation.state"][:, 0].tolist() == [float(s) for s in range(9)]
    # exporting a branch again adds nothing; another segment of it is another episode, appended
    again = export_branches(store, [forks[0], forks[1]], out, progress=False)
    assert (again.episodes, again.skipped) == (0, [forks[0], forks[1]])
    assert LeRobotDataset(out).num_episodes == 3
    export_branches(store, [forks[0]], out, segment="branch", progress=False)
    assert LeRobotDataset(out).num_episodes == 4
    assert len(json.loads((out / LINEAGE_PATH).read_text())["branches"]) == 4


def test_export_refuses_bad_branches_and_writes_nothing(store, tmp_path):
    root = store.append("s", b"a", frame=encode_png(frame(0)), state=[0.0, 0.0])
    with pytest.raises(InvalidInputError, match="at least 2"):
        export_branches(store, [root.branch], tmp_path / "ds", progress=False)
    store.append("s", b"b", parent=root.id, step=1, action=[1.0, 1.0], frame=encode_png(frame(1)))
    with pytest.raises(InvalidInputError, match="observation state"):
        export_branches(store, [root.branch], tmp_path / "ds", progress=False)
    with pytest.raises(Exception, match="no branch b99"):
        export_branches(store, ["b99"], tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds").exists()


def test_export_segments_start_at_the_fork_and_correction_stops_at_the_last_human_action(store, tmp_path):
    main, failure_state, _ = build(store)
    branch = store.fork(failure_state.id, "corrected")
    node = failure_state
    for step, source in ((7, SOURCE_HUMAN), (8, SOURCE_HUMAN), (9, SOURCE_POLICY), (10, SOURCE_POLICY)):
        node = add(store, node, step, source, [float(step), 20.0])  # handed back after two corrections
    export_branches(store, [branch.id], tmp_path / "branch", segment="branch", progress=False)
    export_branches(store, [branch.id], tmp_path / "corr", segment="correction", progress=False)
    ep = LeRobotDataset(tmp_path / "branch").episode(0)
    assert ep["observation.state"][:, 0].tolist() == [6.0, 7.0, 8.0, 9.0]  # from the fork node on
    assert ep["intervention"].tolist() == [True, True, False, False]
    ep = LeRobotDataset(tmp_path / "corr").episode(0)
    assert ep["action"][:, 0].tolist() == [7.0, 8.0] and ep["intervention"].all()
    with pytest.raises(InvalidInputError, match="no human action"):
        export_branches(store, [main[0].branch], tmp_path / "none", segment="correction", progress=False)
    with pytest.raises(InvalidInputError, match="segment must be"):
        export_branches(store, [branch.id], tmp_path / "bad", segment="tail", progress=False)
    assert not (tmp_path / "none").exists() and not (tmp_path / "bad").exists()


def test_an_operator_label_overrides_the_detector_verdict_in_the_export(store, tmp_path):
    """The sessions label each branch with the detector's verdict; the playground's label wins."""
    main, _, forks = build(store)
    store.label(forks[0], ["detector:failure"])  # the operator said success: it stands
    store.label(forks[1], ["success"], remove=True)
    store.label(forks[1], ["detector:success"])  # no operator label: the detector's verdict
    result = export_branches(store, [main[0].branch, *forks], tmp_path / "ds", progress=False)
    assert result.episodes == 3
    entries = json.loads((tmp_path / "ds" / LINEAGE_PATH).read_text())["branches"]
    verdicts = {e["branch_id"]: e["verdict"] for e in entries}
    assert verdicts[main[0].branch] == {"success": False, "source": "operator"}
    assert verdicts[forks[0]] == {"success": True, "source": "operator"}
    assert verdicts[forks[1]] == {"success": True, "source": "detector"}
    assert store.branch(forks[0]).labels == ["corrected", "detector:failure", "success"]  # both kept


def test_an_arm_task_exports_in_its_own_layout_with_its_physics_extras(store, tmp_path):
    """so101_pick: six joints, the front camera's video, its 13-entry state and lift as the metric."""
    from hiwm.tasks import get_task
    from hiwm.tasks.world import camera_key, load_world

    task = get_task("so101_pick")
    world = load_world(task)
    joints = len(task.action.names)
    states = {}  # snapshot bytes -> (state, lift)

    def append(parent, step):
        data = f"arm state {step}".encode()
        states[data] = (np.r_[np.full(joints, 0.1 * step), 0.2, 0.0, 0.02 + 0.01 * step, 1.0, 0, 0, 0], 0.01 * step)
        return store.append(
            "arm", data, parent=None if parent is None else parent.id, step=step,
            action=None if parent is None else [0.1 * step] * joints, source=SOURCE_HUMAN,
            frame=encode_png(frame(step)), state=[0.1 * step] * joints,
        )  # fmt: skip

    node = append(None, 0)
    for step in range(1, 8):
        node = append(node, step)
    branch = node.branch
    with pytest.raises(InvalidInputError, match=r"observation state .*so101_pick"):  # a Push-T layout refused
        export_branches(store, [main_branch(store)], tmp_path / "bad", task=task.name, progress=False)
    result = export_branches(
        store, [branch], tmp_path / "arm", task=task.name, env_state=lambda data: states[data], progress=False
    )
    assert (result.episodes, result.frames) == (1, 7)
    ds = LeRobotDataset(tmp_path / "arm")
    features = world.features(32)
    assert {k: ds.features[k]["shape"] for k in features} == {k: f["shape"] for k, f in features.items()}
    assert ds.features["action"]["names"] == list(task.action.names) and "observation.image" not in ds.features
    assert ds.info["robot_type"] == "so101_pick" and read_tasks(tmp_path / "arm") == [world.instruction]
    ep = ds.episode(0)
    assert ep[camera_key("front")].shape == (7, 32, 32, 3)
    np.testing.assert_allclose(ep["action"][:, 0], [0.1 * s for s in range(1, 8)], atol=1e-6)
    np.testing.assert_allclose(ep["observation.environment_state"][:, joints + 2], [0.02 + 0.01 * s for s in range(7)])
    np.testing.assert_allclose(ep["next.lift"], [0.01 * s for s in range(1, 8)], atol=1e-7)
    # success is the metric past the task's threshold (5 cm): the step to 0.06 m; done there
    assert (
        ep["next.success"].tolist() == [False] * 5 + [True] * 2 and ep["next.done"].tolist() == [False] * 5 + [True] * 2
    )
    np.testing.assert_allclose(ep["next.reward"], ep["next.success"].astype(float))
    assert "next.coverage" not in ds.features


def main_branch(store) -> str:
    """A two-dimensional (Push-T) branch in the same store."""
    root = store.append("flat", b"flat 0", frame=encode_png(frame(0)), state=[0.0, 0.0])
    store.append(
        "flat", b"flat 1", parent=root.id, step=1, action=[1.0, 1.0], frame=encode_png(frame(1)), state=[1.0, 1.0]
    )
    return root.branch
