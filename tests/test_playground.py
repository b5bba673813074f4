"""The browser playground end to end: headless Chromium, the teleop bridge, the arbiter and the simulated Push-T robot.

Each piece runs in its own process over real DDS; the page is driven with real key presses.
"""

from __future__ import annotations

import shutil
import socket
import time

import numpy as np
import pytest

from hiwm.comm import create_node
from hiwm.comm.qos import KEEP_ALL
from hiwm.tasks import get_task
from hiwm.teleop.arbiter import AUTONOMOUS, CORRECTING, PAUSED, Arbiter, ArbiterConfig

NS = "/pg"
#: The Push-T task's camera topic (camera/camera/color/image_raw), where its worlds publish it.
PUSHT_CAMERA = get_task("pusht").cameras[0].topic
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Debian's chromium and chromium-driver are not installed (.ci/run installs them)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_arbiter_phases_sources_and_smooth_handover():
    arb = Arbiter(ArbiterConfig(blend_steps=3, max_step=10.0 / 512))  # 10 px of the 512 px table
    arb.on_agent(np.array([100.0, 100.0]))
    sent = arb.on_policy(np.array([[105.0, 100.0], [110.0, 100.0]]), "ckpt")
    assert sent.source == 0 and sent.rows[-1].tolist() == [110.0, 100.0]
    emit, change = arb.on_operator(np.array([[300.0, 100.0]]), "browser")  # auto take over, far away
    assert change.phase == CORRECTING and emit.source == 1
    np.testing.assert_allclose(emit.rows[0], [120.0, 100.0])  # rate-limited: no jump at handover
    assert arb.on_policy(np.array([[0.0, 0.0]])) is None  # the policy is held while correcting
    assert arb.set_phase(PAUSED).previous == CORRECTING
    assert arb.on_operator(np.array([[1.0, 1.0]]))[0] is None and arb.counts["operator_ignored"] == 1
    arb.set_phase(AUTONOMOUS)
    emit = arb.on_policy(np.array([[400.0, 100.0]] * 4))
    steps = np.linalg.norm(np.diff(np.vstack([[120.0, 100.0], emit.rows]), axis=0), axis=1)
    assert np.all(steps[:3] <= 10.0 + 1e-9) and emit.rows[-1].tolist() == [400.0, 100.0]  # blend ends
    with pytest.raises(ValueError, match="unknown phase"):
        arb.set_phase(7)


@pytest.fixture
def playground(procs):
    port = free_port()
    ros = ["--ros-args", "-r", f"__ns:={NS}"]
    procs.python("hiwm.nodes.sim_robot", *ros, "-p", "task:=pusht", "-p", "clock:=lockstep")
    procs.python("hiwm.nodes.arbiter", *ros)
    web = procs.python("hiwm.nodes.teleop_web", *ros, "-p", "task:=pusht", "-p", f"port:={port}")
    node = create_node("playground_test")
    states: list = []
    commands: list = []
    node.create_subscription("sensor_msgs/msg/JointState", f"{NS}/robot/state", states.append, KEEP_ALL)
    node.create_subscription("hiwm_msgs/msg/ActionChunk", f"{NS}/robot/command", commands.append, KEEP_ALL)
    reset = node.create_client("hiwm_msgs/srv/Reset", f"{NS}/robot/reset")
    assert reset.wait_for_service(30.0)
    deadline = time.monotonic() + 30
    while f"playground at http://127.0.0.1:{port}/" not in procs.output(web):
        assert time.monotonic() < deadline and web.poll() is None, procs.output(web)
        time.sleep(0.1)
    yield port, node, states, commands, procs, web
    node.destroy()


def chrome(*extra: str):
    """Headless Debian chromium under selenium; ``extra`` command-line switches."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1000,700"):
        options.add_argument(arg)
    for arg in extra:
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.fixture
def browser():
    driver = chrome()
    try:
        yield driver
    finally:
        driver.quit()


def wait_js(driver, expr: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(f"return {expr};")
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {expr}: {driver.execute_script('return JSON.stringify(window.hiwm)')}")


@needs_browser
def test_page_connects_keys_move_the_agent_and_buttons_change_phase(playground, browser):
    from selenium.webdriver.common.action_chains import ActionChains

    port, node, states, commands, procs, web = playground
    browser.get(f"http://127.0.0.1:{port}/")
    wait_js(browser, "window.hiwm.open")
    wait_js(browser, "window.hiwm.phase === 'AUTONOMOUS'")  # the arbiter's latched phase reached the page
    browser.find_element("id", "seed").clear()
    browser.find_element("id", "seed").send_keys("3")
    browser.find_element("id", "reset").click()
    wait_js(browser, "window.hiwm.frames >= 1 && window.hiwm.status && window.hiwm.status.step === 0")
    assert node.spin_until(lambda: len(states) >= 1, 10.0)
    start = np.asarray(states[-1].position).copy()

    # hold D: the operator takes over, every key message steps the robot, the agent moves right
    browser.find_element("tag name", "body").click()
    ActionChains(browser).key_down("d").pause(0.6).key_up("d").perform()
    wait_js(browser, "window.hiwm.phase === 'CORRECTING'")
    wait_js(browser, "window.hiwm.latencies.length >= 3")  # frames echo the key messages' t_client
    assert node.spin_until(lambda: len(states) > 4 and states[-1].position[0] > start[0] + 15.0, 10.0), (
        start, [list(s.position) for s in states[-3:]]
    )  # fmt: skip
    assert commands and all(c.source == 1 for c in commands)  # every executed action is the human's
    assert abs(states[-1].position[1] - start[1]) < 10.0  # D moves along x only
    assert browser.execute_script("return window.hiwm.status.step") >= 3

    browser.find_element("id", "hand_back").click()
    wait_js(browser, "window.hiwm.phase === 'AUTONOMOUS'")
    browser.find_element("id", "pause").click()
    wait_js(browser, "window.hiwm.phase === 'PAUSED'")
    n = len(commands)
    ActionChains(browser).key_down("w").pause(0.3).key_up("w").perform()
    time.sleep(0.5)
    node.spin_until(lambda: False, 0.3)
    assert len(commands) == n  # paused: operator input is not executed

    # without a branch cache, rollback answers with a clear failure instead of hanging
    browser.find_element("id", "rollback").click()
    wait_js(browser, "window.hiwm.results.some(r => r.command === 'rollback')")
    result = browser.execute_script("return window.hiwm.results.find(r => r.command === 'rollback')")
    assert result["success"] is False and "branch_cache/rollback" in result["message"]

    # malformed and oversized messages are refused; the server keeps serving this page
    browser.execute_script(
        "const s = new WebSocket(`ws://${location.host}/ws`); window.big = s;"
        "s.onopen = () => s.send('x'.repeat(100000)); s.onclose = (e) => { window.bigClosed = e.code; };"
    )
    wait_js(browser, "window.bigClosed")
    assert browser.execute_script("return window.bigClosed") == 1009
    browser.execute_script(
        "const s = new WebSocket(`ws://${location.host}/ws`); window.bad = [];"
        "s.onmessage = (e) => window.bad.push(e.data);"
        "s.onopen = () => { s.send('{not json'); s.send(JSON.stringify({type: 'action', action: {z: 1}})); };"
    )
    wait_js(browser, "window.bad.length >= 2")
    assert all('"error"' in m for m in browser.execute_script("return window.bad"))
    browser.find_element("id", "take_over").click()
    wait_js(browser, "window.hiwm.phase === 'CORRECTING'")
    assert web.poll() is None
    log = procs.output(web)
    assert "refused a client message" in log and "over 4096 bytes" in log


def test_binding_beyond_loopback_needs_a_token(procs):
    proc = procs.python("hiwm.nodes.teleop_web", "--ros-args", "-p", "host:=0.0.0.0")
    assert proc.wait(30) == 2
    assert "set a token" in procs.output(proc)


def test_terminal_keyboard_moves_the_agent_and_changes_phase(procs, tmp_path):
    import os
    import subprocess
    import sys

    from conftest import ROOT, wait_for

    ns = "/kb"
    ros = ["--ros-args", "-r", f"__ns:={ns}"]
    procs.python("hiwm.nodes.sim_robot", *ros, "-p", "task:=pusht", "-p", "clock:=lockstep", "-p", "seed:=4")
    procs.python("hiwm.nodes.arbiter", *ros)
    node = create_node("keyboard_test")
    states, phases = [], []
    node.create_subscription("sensor_msgs/msg/JointState", f"{ns}/robot/state", states.append, KEEP_ALL)
    from hiwm.comm.qos import LATCHED

    node.create_subscription("hiwm_msgs/msg/Phase", f"{ns}/arbiter/phase", phases.append, LATCHED)
    master, slave = os.openpty()
    keyboard = subprocess.Popen(
        [sys.executable, "-m", "hiwm.nodes.teleop_keyboard", *ros],
        stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, env=os.environ.copy(),
    )  # fmt: skip
    os.close(slave)
    out = bytearray()

    def read_some() -> str:
        while True:
            import select

            if not select.select([master], [], [], 0.05)[0]:
                return out.decode(errors="replace")
            try:
                out.extend(os.read(master, 4096))
            except OSError:
                return out.decode(errors="replace")

    try:
        assert wait_for(lambda: "W up  S down  A left  D right" in read_some(), 30), read_some()  # the task's keys
        reset = node.create_client("hiwm_msgs/srv/Reset", f"{ns}/robot/reset")
        assert reset.wait_for_service(20)
        from hiwm.comm import new_message

        assert reset.call(new_message("hiwm_msgs/srv/Reset_Request", seed=4), timeout=10).success
        assert node.spin_until(lambda: len(states) >= 1, 10)
        time.sleep(1.0)  # the keyboard's subscriptions see the robot state
        start = np.asarray(states[-1].position).copy()
        os.write(master, b"ddddd")
        assert node.spin_until(lambda: states[-1].position[0] > start[0] + 40.0, 15), [s.position for s in states[-3:]]
        assert node.spin_until(lambda: phases and phases[-1].phase == CORRECTING, 10)
        os.write(master, b"p")
        assert node.spin_until(lambda: phases[-1].phase == PAUSED, 10), read_some()
        os.write(master, b"b")
        assert wait_for(lambda: "rollback: FAILED" in read_some(), 15), read_some()
        os.write(master, b"q")
        assert keyboard.wait(15) == 0, read_some()
    finally:
        if keyboard.poll() is None:
            keyboard.kill()
        os.close(master)
        node.destroy()


def test_arbiter_refuses_malformed_chunks_and_forwards_good_ones(procs):
    from conftest import wait_for

    from hiwm.comm import new_message

    arbiter = procs.python("hiwm.nodes.arbiter", "--ros-args", "-r", "__ns:=/arb")
    node = create_node("arbiter_test")
    commands: list = []
    node.create_subscription("hiwm_msgs/msg/ActionChunk", "/arb/robot/command", commands.append, KEEP_ALL)
    pub = node.create_publisher("hiwm_msgs/msg/ActionChunk", "/arb/policy/action", KEEP_ALL)
    try:
        assert node.spin_until(lambda: pub.matched_count() > 0, 30.0), procs.output(arbiter)
        time.sleep(0.5)
        for data, horizon in (([float("nan"), 1.0], 1), ([1.0, 2.0, 3.0], 2), ([100.0, 200.0], 1)):
            pub.publish(new_message("hiwm_msgs/msg/ActionChunk", source_id="p", horizon=horizon, action_dim=2,
                                    dt=0.1, data=np.asarray(data, dtype=np.float32)))  # fmt: skip
        assert node.spin_until(lambda: len(commands) >= 1, 10.0)
        node.spin_until(lambda: False, 0.5)
        assert len(commands) == 1 and list(commands[0].data) == [100.0, 200.0] and commands[0].source == 0
        assert wait_for(lambda: "must be finite" in procs.output(arbiter), 5), procs.output(arbiter)
        assert "expected horizon*action_dim" in procs.output(arbiter) and arbiter.poll() is None
    finally:
        node.destroy()
