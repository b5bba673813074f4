"""The whole Hi-WM graph (launch/hiwm.launch.py) under `hiwm launch`, in both worlds, with one policy.

World model: an operator in headless Chromium stops the policy's rollout, takes over with WASD, rolls back
(the page shows the earlier frame again, exactly), forks, labels, hands back; the branch cache holds
it all and exports it. Real world: the same graph and policy on the Push-T robot. Both record episodes.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import sys
import time

import pytest
from conftest import require
from test_playground import CHROMEDRIVER, CHROMIUM, free_port, wait_js
from test_policy_server import tiny_policy
from test_world_model_node import tiny_checkpoint

from hiwm.branch_cache.store import SOURCE_HUMAN, BranchStore
from hiwm.cli.main import main as hiwm
from hiwm.comm import create_node, new_message
from hiwm.data import LeRobotDataset, verify


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    tiny_checkpoint(root / "wm")
    tiny_policy(root / "policy")
    return root / "wm", root / "policy"


def launch(procs, tmp, world: str, ns: str, wm, policy, port: int, *extra: str, backend: str = "dds"):
    args = [
        sys.executable, "-m", "hiwm.cli.main", "launch", "hiwm", f"world:={world}", f"namespace:={ns}",
        f"world_model:={wm}", f"policy:={policy}", "clock:=lockstep", f"port:={port}",
        f"dataset:={tmp / ('ds_' + world)}", f"bag:={tmp / ('bag_' + world)}", f"db:={tmp / ('cache_' + world)}.db",
        *extra,
    ]  # fmt: skip
    return procs.start(*args, name=f"launch_{world}", env={"HIWM_BACKEND": backend})  # the graph's nodes


def reset(node, ns: str, seed: int) -> None:
    client = node.create_client("hiwm_msgs/srv/Reset", f"{ns}/robot/reset")
    assert client.wait_for_service(60.0)
    assert client.call(new_message("hiwm_msgs/srv/Reset_Request", seed=seed), timeout=20.0).success


def stop(procs, launcher) -> None:
    launcher.send_signal(signal.SIGINT)
    assert launcher.wait(30) == 0, procs.output(launcher)


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="Debian's chromium and chromium-driver are not installed")
@pytest.mark.parametrize("backend", ["dds", "rclpy"])
def test_operator_in_the_world_model_then_the_same_graph_on_the_robot(procs, tmp_path, checkpoints, backend):
    """The graph's nodes on either backend; the test's own nodes on the DDS backend."""
    if backend == "rclpy":
        require(importlib.util.find_spec("rclpy") is not None, "rclpy is not importable (no ROS 2 on this machine)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains

    wm, policy = checkpoints
    port = free_port()
    launcher = launch(procs, tmp_path, "model", "/hm", wm, policy, port, backend=backend)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        deadline = time.monotonic() + 60
        while f"playground at http://127.0.0.1:{port}/" not in procs.output(launcher):
            assert time.monotonic() < deadline and launcher.poll() is None, procs.output(launcher)
            time.sleep(0.2)
        node = create_node("graph_test")
        assert node.create_client("hiwm_msgs/srv/Reset", "/hm/robot/reset").wait_for_service(60.0)
        # lockstep: the first observation after a reset must find the policy listening
        assert node.create_client("std_srvs/srv/Trigger", "/hm/policy_server/stats").wait_for_service(60.0)
        node.destroy()
        time.sleep(1.0)
        browser.get(f"http://127.0.0.1:{port}/")
        wait_js(browser, "window.hiwm.open && window.hiwm.phase === 'AUTONOMOUS'", 30)
        browser.find_element("id", "seed").clear()
        browser.find_element("id", "seed").send_keys("5")
        browser.find_element("id", "reset").click()

        # the policy drives the world model; the operator stops it
        wait_js(browser, "window.hiwm.status && window.hiwm.status.world === 'model' && window.hiwm.status.step >= 3")
        browser.find_element("id", "pause").click()
        wait_js(browser, "window.hiwm.phase === 'PAUSED'")
        time.sleep(1.0)
        stopped = browser.execute_script("return window.hiwm.status.step")
        time.sleep(1.0)
        assert browser.execute_script("return window.hiwm.status.step") == stopped < 300  # paused: it holds

        # take over with the keyboard: each key message steps the world model once
        browser.find_element("id", "take_over").click()
        wait_js(browser, "window.hiwm.phase === 'CORRECTING'")
        browser.find_element("tag name", "body").click()
        for _ in range(6):
            n = browser.execute_script("return window.hiwm.frames")
            ActionChains(browser).key_down("d").key_up("d").perform()
            wait_js(browser, f"window.hiwm.frames > {n}")
        settled = -1  # a held key may repeat (every 50 ms): count the steps once the frames stop coming
        while settled != (settled := browser.execute_script("return window.hiwm.frames")):
            time.sleep(0.5)
        moved = browser.execute_script("return window.hiwm.status.step")
        assert moved >= stopped + 6 and browser.execute_script("return window.hiwm.phase") == "CORRECTING"
        hashes = browser.execute_script("return window.hiwm.frameHashes")
        assert len(set(hashes[-6:])) > 1  # the frames change as the agent moves

        # roll back 3 steps: the world model is restored and the page shows that step's frame again, exactly
        browser.find_element("id", "rollback_n").clear()
        browser.find_element("id", "rollback_n").send_keys("3")
        browser.find_element("id", "rollback").click()
        wait_js(browser, "window.hiwm.results.some(r => r.command === 'rollback')", 30)
        result = browser.execute_script("return window.hiwm.results.find(r => r.command === 'rollback')")
        assert result["success"], result
        wait_js(browser, f"window.hiwm.status.step === {moved - 3}")
        assert browser.execute_script("return window.hiwm.frameHashes.at(-1)") == hashes[-4]

        # fork a correction from there, label it, see both branches in the tree
        browser.find_element("id", "fork").click()
        wait_js(browser, "window.hiwm.results.some(r => r.command === 'fork' && r.success)", 30)
        for _ in range(4):
            n = browser.execute_script("return window.hiwm.frames")
            ActionChains(browser).key_down("s").key_up("s").perform()
            wait_js(browser, f"window.hiwm.frames > {n}")
        browser.find_element("id", "label_success").click()
        wait_js(browser, "window.hiwm.results.some(r => r.command === 'label' && r.success)", 30)
        wait_js(browser, "window.hiwm.tree && window.hiwm.tree.available && window.hiwm.tree.branches.length >= 2")
        # hand back: the policy drives the world model again
        browser.find_element("id", "hand_back").click()
        wait_js(browser, "window.hiwm.phase === 'AUTONOMOUS'")
        wait_js(browser, f"window.hiwm.status.step >= {moved + 6}", 60)
        node = create_node("graph_test")
        reset(node, "/hm", 6)  # ends the episode: the recorder saves it
        node.destroy()
        time.sleep(1.0)
    finally:
        browser.quit()
    stop(procs, launcher)

    # the branch cache holds the operator's work; export it with the CLI
    with BranchStore(tmp_path / "cache_model.db", readonly=True) as store:
        forked = [b for b in store.branches() if b.parent_branch is not None and "success" in b.labels]
        assert forked, [(b.id, b.labels) for b in store.branches()]
        nodes = store.trajectory(forked[0].id)
        assert [n.step for n in nodes] == list(range(len(nodes)))  # one path from the session's start
        assert any(n.source == SOURCE_HUMAN for n in nodes) and any(n.source == 0 for n in nodes)
    out = tmp_path / "exported"
    assert hiwm(["branches", "export", forked[0].id, "--db", str(tmp_path / "cache_model.db"), "-o", str(out)]) == 0
    assert verify(out).ok and LeRobotDataset(out).episode(0, videos=False)["intervention"].any()
    model_ds = LeRobotDataset(tmp_path / "ds_model")
    assert model_ds.num_episodes >= 1 and verify(tmp_path / "ds_model").ok

    # the same graph, the same policy, on the robot: it drives, the recorder records
    launcher = launch(procs, tmp_path, "real", "/hr", wm, policy, free_port(), "teleop:=false", backend=backend)
    node = create_node("graph_test_real")
    try:
        stats = node.create_client("std_srvs/srv/Trigger", "/hr/policy_server/stats")
        assert stats.wait_for_service(60.0)  # lockstep: the first observation must find the policy listening
        time.sleep(1.0)
        reset(node, "/hr", 7)
        deadline = time.monotonic() + 60
        while json.loads(stats.call(new_message("std_srvs/srv/Trigger_Request"), timeout=10).message)["queries"] < 3:
            assert time.monotonic() < deadline, procs.output(launcher)
            time.sleep(0.2)
        reset(node, "/hr", 8)
        time.sleep(1.0)
    finally:
        node.destroy()
    stop(procs, launcher)
    real_ds = LeRobotDataset(tmp_path / "ds_real")
    assert real_ds.num_episodes >= 1 and verify(tmp_path / "ds_real").ok
    assert real_ds.features["observation.image"]["shape"] == model_ds.features["observation.image"]["shape"]
    sources = real_ds.episode(0, videos=False)["action.source"]
    assert (sources == 0).all()  # the policy drove every step on the robot


def test_one_command_evaluates_a_policy_in_both_worlds(checkpoints, tmp_path, capsys):
    wm, policy = checkpoints
    args = ["eval", "--policy", str(policy), "--world-model", str(wm), "--both", "--seeds", "100:102",
            "--max-steps", "12", "--workers", "1", "--videos", "1", "--out", str(tmp_path)]  # fmt: skip
    assert hiwm(args) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(rows) == {"real", "model"} and all(r["episodes"] == 2 for r in rows.values())
    assert json.loads((tmp_path / "side_by_side.json").read_text()) == rows
    for world in ("real", "model"):
        episodes = json.loads((tmp_path / world / "episodes.json").read_text())
        assert [e["seed"] for e in episodes] == [100, 101] and all(e["steps"] <= 12 for e in episodes)
