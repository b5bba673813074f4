"""Exporting cache branches as LeRobot v3 episodes: intervention flags, action source, lineage, frames."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hiwm.branch_cache.export import LINEAGE_PATH, encode_png, export_branches
from hiwm.branch_cache.store import SOURCE_HUMAN, SOURCE_POLICY, BranchStore, InvalidInputError
from hiwm.data.lerobot import LeRobotDataset


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
