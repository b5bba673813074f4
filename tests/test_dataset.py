"""Expert episodes into LeRobot v3 datasets and MCAP bags, read back with others' tools; crashes and corruption."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from hiwm.cli.main import main as hiwm
from hiwm.data import LeRobotDataset, verify
from hiwm.data.collect import RECIPES, CollectConfig, collect, expert_episode, recipe
from hiwm.data.lerobot import DatasetError

CAMERA = "/camera/camera/color/image_raw"  # the Push-T camera's topic
TOPICS = {CAMERA, "/robot/state", "/task/state", "/task/status", "/robot/command"}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Path, Path, list]:
    """Three noisy expert episodes as a dataset and a bag, plus the episodes' raw arrays."""
    root = tmp_path_factory.mktemp("collect")
    cfg = CollectConfig(episodes=3, seed=11, noise=0.5, max_steps=60, workers=1, flush_every=2)
    results: list = []
    summary = collect(cfg, root / "ds", bag_path=root / "bag", on_episode=results.append)
    assert summary.episodes == 3 and summary.frames == sum(len(r.frames["action"]) for r in results)
    return root / "ds", root / "bag", results


def test_dataset_reads_back_with_pyarrow_and_pyav(recorded):
    ds_root, _, results = recorded
    info = json.loads((ds_root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 10
    lengths = [len(r.frames["action"]) for r in results]
    assert info["total_episodes"] == 3 and info["total_frames"] == sum(lengths)
    assert info["features"]["intervention"] == {"dtype": "bool", "shape": [1], "names": None}
    # two flushes (flush_every=2): two data files, episodes never split across files
    tables = [pq.read_table(p) for p in sorted((ds_root / "data").rglob("*.parquet"))]
    assert len(tables) == 2
    data = pq.read_table(sorted((ds_root / "data").rglob("*.parquet"))[0]).to_pydict()
    assert data["episode_index"][0] == 0 and data["frame_index"][: lengths[0]] == list(range(lengths[0]))
    np.testing.assert_allclose(np.array(data["action"][: lengths[0]]), results[0].frames["action"], rtol=1e-6)
    assert not any(data["intervention"]) and set(data["action.source"]) == {2}
    episodes = pq.read_table(ds_root / "meta/episodes/chunk-000/file-000.parquet").to_pydict()
    assert episodes["length"][:2] == lengths[:2]
    # the video decodes with PyAV to the recorded frames (lossy h264, close in value)
    video = sorted((ds_root / "videos/observation.image").rglob("*.mp4"))[0]
    with av.open(str(video)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    assert frames.shape == (lengths[0] + lengths[1], 96, 96, 3)
    error = np.abs(frames[: lengths[0]].astype(int) - results[0].frames["observation.image"].astype(int)).mean()
    assert error < 3.0, error
    # and through our reader
    ds = LeRobotDataset(ds_root)
    ep = ds.episode(2)
    assert ep["observation.image"].shape == (lengths[2], 96, 96, 3)
    np.testing.assert_allclose(ep["observation.environment_state"], results[2].frames["observation.environment_state"])


def test_bag_opens_with_rosbags_and_mcap(recorded):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory
    from rosbags.highlevel import AnyReader

    _, bag, results = recorded
    n_obs = sum(len(r.frames["action"]) + 1 for r in results)
    with AnyReader([bag]) as reader:
        assert {c.topic for c in reader.connections} == TOPICS
        counts = {c.topic: c.msgcount for c in reader.connections}
        conn = next(c for c in reader.connections if c.topic == "/task/status")
        statuses = [reader.deserialize(raw, conn.msgtype) for _, _, raw in reader.messages(connections=[conn])]
    assert counts[CAMERA] == n_obs and counts["/robot/command"] == n_obs - 3
    assert statuses[0].episode_id == "seed-11" and statuses[-1].episode_id == "seed-13"
    mcap_file = next(bag.glob("*.mcap"))
    seen: dict[str, int] = {}
    with mcap_file.open("rb") as f:
        for _, channel, _, msg in make_reader(f, decoder_factories=[DecoderFactory()]).iter_decoded_messages():
            seen[channel.topic] = seen.get(channel.topic, 0) + 1
            if channel.topic == "/task/state" and seen[channel.topic] == 1:
                assert list(msg.name) == ["agent_x", "agent_y", "block_x", "block_y", "block_theta"]
            if channel.topic == "/robot/command" and seen[channel.topic] == 1:
                assert msg.horizon == 1 and msg.source == 2 and len(msg.data) == 2
    assert seen == counts


def test_bag_converts_to_the_same_episodes(recorded, tmp_path, capsys):
    ds_root, bag, _ = recorded
    assert hiwm(["bag", "convert", str(bag), str(tmp_path / "conv"), "-q"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == {"episodes": 3, "frames": LeRobotDataset(ds_root).num_frames, "dropped": 0, "bad_messages": 0}
    a, b = LeRobotDataset(ds_root), LeRobotDataset(tmp_path / "conv")
    for i in range(3):
        ea, eb = a.episode(i, videos=False), b.episode(i, videos=False)
        for key in ("action", "observation.state", "observation.environment_state", "next.coverage", "next.reward"):
            np.testing.assert_allclose(ea[key], eb[key], rtol=1e-6, err_msg=key)
        for key in ("next.done", "next.success", "action.source"):
            np.testing.assert_array_equal(ea[key], eb[key], err_msg=key)
    assert a.features == b.features and a.tasks == b.tasks and b.info["robot_type"] == "pusht"
    assert verify(tmp_path / "conv").ok


def test_an_arm_bag_converts_to_the_same_episodes(tmp_path, capsys):
    """so101_pick's contract in a bag (its camera on realsense-ros's topic, 13-entry task/state) -> its layout."""
    cfg = CollectConfig(task="so101_pick", episodes=2, seed=3, max_steps=12, workers=1)
    collect(cfg, tmp_path / "ds", bag_path=tmp_path / "bag")
    argv = ["bag", "convert", str(tmp_path / "bag"), str(tmp_path / "conv"), "--task", "so101_pick", "-q"]
    assert hiwm(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == {"episodes": 2, "frames": 24, "dropped": 0, "bad_messages": 0}
    a, b = LeRobotDataset(tmp_path / "ds"), LeRobotDataset(tmp_path / "conv")
    assert a.features == b.features and a.tasks == b.tasks and b.info["robot_type"] == "so101_pick"
    for i in range(2):
        ea, eb = a.episode(i), b.episode(i)
        for key in ("action", "observation.state", "observation.environment_state", "next.lift", "next.done"):
            np.testing.assert_allclose(ea[key], eb[key], rtol=1e-6, err_msg=key)
        assert np.abs(ea["observation.images.front"].astype(int) - eb["observation.images.front"]).mean() < 2
    # a topic the bag lacks, a camera the task lacks: clear refusals
    assert hiwm(["bag", "convert", str(tmp_path / "bag"), str(tmp_path / "wrong"), "--state", "/nope", "-q"]) == 2
    assert "/nope" in capsys.readouterr().err
    wrong = ["bag", "convert", str(tmp_path / "bag"), str(tmp_path / "wrong"), "--camera", "side=/x", "-q"]
    assert hiwm([*wrong, "--task", "so101_pick"]) == 2
    assert "no camera ['side'] in task 'so101_pick'" in capsys.readouterr().err


def test_cli_collect_info_verify(tmp_path, capsys):
    out = tmp_path / "ds"
    assert hiwm(["collect", "--episodes", "2", "--max-steps", "20", "--out", str(out), "--workers", "1", "-q"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["episodes"] == 2 and result["frames"] == 40
    assert hiwm(["dataset", "info", str(out)]) == 0
    assert "episodes 2, frames 40" in capsys.readouterr().out
    assert hiwm(["dataset", "verify", str(out), "-q"]) == 0
    assert ": OK: 2 episodes, 40 frames" in capsys.readouterr().out
    # the dataset records how it was collected: the recipe collects it again, seed for seed
    how = recipe(out)
    assert how is not None and (how["episodes"], how["seed"], how["max_steps"]) == (2, 0, 20)
    again = collect(CollectConfig(**how), tmp_path / "again")
    assert again.frames == 40 and recipe(tmp_path / "again") == how
    np.testing.assert_array_equal(
        LeRobotDataset(tmp_path / "again").episode(1, videos=False)["action"],
        LeRobotDataset(out).episode(1, videos=False)["action"],
    )
    # appending continues the episode indices; two recipes in one dataset are no longer one recipe
    assert hiwm(["collect", "--episodes", "1", "--max-steps", "10", "--out", str(out), "--seed", "5", "-q"]) == 0
    ds = LeRobotDataset(out)
    assert ds.num_episodes == 3 and ds.num_frames == 50 and ds.episode(2, videos=False)["index"][0] == 40
    assert recipe(out) is None and len(json.loads((out / RECIPES).read_text())) == 2
    (out / RECIPES).write_text("{not json")  # a corrupt record is a clear error, not a silent "no recipe"
    with pytest.raises(DatasetError, match="unreadable collect recipes"):
        recipe(out)


def committed_episodes(root: Path) -> int:
    try:
        return int(json.loads((root / "meta" / "info.json").read_text())["total_episodes"])
    except (OSError, ValueError, KeyError):
        return 0


def test_killed_writer_leaves_a_valid_dataset(tmp_path):
    """kill -9 of a collector at random moments: what is on disk is always valid, and appending resumes."""
    out = tmp_path / "ds"
    rng = random.Random(7)
    committed = 0
    for trial in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-m", "hiwm.cli.main", "collect", "--episodes", "40", "--max-steps", "30",
             "--workers", "1", "--flush-every", "1", "--seed", str(100 * trial), "--out", str(out), "-q"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        # kill at a random moment once this collector has committed an episode (start-up time varies with load)
        started = time.monotonic()
        while committed_episodes(out) <= committed and time.monotonic() - started < 60:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        report = verify(out)
        assert report.ok, report.text()
        assert report.episodes > committed  # nothing committed before is lost; this run added some
        committed = report.episodes
        ds = LeRobotDataset(out)
        if ds.num_episodes:
            last = ds.episode(ds.num_episodes - 1)
            assert len(last["action"]) == 30 and last["observation.image"].shape == (30, 96, 96, 3)
    assert committed > 0


@pytest.mark.parametrize(
    "damage, message",
    [
        ("truncate_data", "data/chunk-000/file-000.parquet"),
        ("delete_video", "video file missing"),
        ("bad_info", "meta/info.json"),
        ("short_video", "videos/observation.image/chunk-000/file-000.mp4"),
    ],
)
def test_corrupt_datasets_get_clear_errors(tmp_path, damage, message, capsys):
    out = tmp_path / "ds"
    collect(CollectConfig(episodes=2, max_steps=15, workers=1), out)
    if damage == "truncate_data":
        path = out / "data/chunk-000/file-000.parquet"
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "delete_video":
        (out / "videos/observation.image/chunk-000/file-000.mp4").unlink()
    elif damage == "bad_info":
        (out / "meta/info.json").write_text("{not json")
    else:
        path = out / "videos/observation.image/chunk-000/file-000.mp4"
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    report = verify(out)
    assert not report.ok and any(message in e for e in report.errors), report.text()
    assert hiwm(["dataset", "verify", str(out), "-q"]) == 1
    assert "INVALID" in capsys.readouterr().out


def test_expert_episode_arrays_are_consistent():
    result = expert_episode(seed=2, noise=0.0, max_steps=25)
    frames = result.frames
    assert len(frames["action"]) == 25 and frames["next.done"][-1] and not frames["next.done"][:-1].any()
    np.testing.assert_allclose(frames["observation.state"], frames["observation.environment_state"][:, :2])


def test_clean_labels_record_the_noise_free_expert_on_noisy_states():
    from hiwm.tasks.pusht.expert import ScriptedExpert

    taken = expert_episode(seed=4, noise=1.0, max_steps=30).frames
    dart = expert_episode(seed=4, noise=1.0, max_steps=30, labels="clean").frames
    # the same noisy run (same seed): only the recorded action differs
    np.testing.assert_allclose(dart["observation.environment_state"], taken["observation.environment_state"])
    assert not np.allclose(dart["action"], taken["action"])
    labeller = ScriptedExpert(seed=4)
    clean = np.array([labeller.act(s) for s in dart["observation.environment_state"]])
    np.testing.assert_allclose(dart["action"], clean, atol=1e-3)
    with pytest.raises(ValueError, match="labels"):
        CollectConfig(labels="nope")
