"""The playground and the keyboard for tasks other than Push-T: every camera on the page, the task's keys.

teleop_web runs in its own process over real DDS (for a made-up two-camera task through a test peer,
and for the arm task by its ``task`` parameter); this process plays the robot (state, camera frames)
and drives headless Chromium with real key presses.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, wait_for
from test_playground import chrome, free_port, needs_browser, wait_js

from hiwm.comm import create_node, new_message
from hiwm.comm.images import numpy_to_image
from hiwm.comm.qos import KEEP_ALL
from hiwm.tasks import get_task


class FakeRobot:
    """Publishes a robot state and one solid-colour frame per camera; collects operator actions."""

    def __init__(self, ns: str, task, position: np.ndarray, colours: list[tuple[int, int, int]]) -> None:
        self.node = create_node("playground_robot")
        self.task, self.position, self.colours = task, np.asarray(position, dtype=np.float64), colours
        self.actions: list = []
        actions = f"{ns}/operator/action"
        self.node.create_subscription("hiwm_msgs/msg/ActionChunk", actions, self.actions.append, KEEP_ALL)
        self.state_pub = self.node.create_publisher("sensor_msgs/msg/JointState", f"{ns}/robot/state", KEEP_ALL)
        self.image_pubs = [
            self.node.create_publisher("sensor_msgs/msg/Image", f"{ns}/{c.topic}", KEEP_ALL) for c in task.cameras
        ]

    def publish(self) -> None:
        head = self.node.header()
        self.state_pub.publish(
            new_message(
                "sensor_msgs/msg/JointState",
                header=head,
                name=list(self.task.action.names),
                position=self.position,
                velocity=np.zeros_like(self.position),
                effort=np.zeros(0),
            )
        )
        for pub, camera, colour in zip(self.image_pubs, self.task.cameras, self.colours, strict=True):
            pub.publish(numpy_to_image(np.full((camera.height, camera.width, 3), colour, np.uint8), head))

    def pump(self, driver, expr: str, timeout: float = 30.0):
        """Publish every 0.2 s until the page's ``expr`` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.publish()
            self.node.spin_until(lambda: False, 0.2)
            value = driver.execute_script(f"return {expr};")
            if value:
                return value
        page = driver.execute_script("return JSON.stringify(window.hiwm)")
        raise AssertionError(f"timed out waiting for {expr}: {page}")

    def wait_actions(self, n: int, timeout: float = 15.0) -> bool:
        return self.node.spin_until(lambda: len(self.actions) >= n, timeout)


def start(procs, module: str, ns: str, *params: str):
    port = free_port()
    args = ["--ros-args", "-r", f"__ns:={ns}", "-p", f"port:={port}"]
    for p in params:
        args += ["-p", p]
    web = procs.python(module, *args)
    assert wait_for(lambda: "playground at http://" in procs.output(web) or web.poll() is not None, 60)
    assert web.poll() is None, procs.output(web)
    return port, web


def pixel(driver, camera: int) -> list[int]:
    return driver.execute_script(
        f"return Array.from(document.getElementById('camera-{camera}').getContext('2d').getImageData(1, 1, 1, 1).data)"
    )


@needs_browser
@pytest.mark.probe(
    "a task whose camera name and key label hold HTML (<img onerror=...>) served to the playground",
    "shown as text in the camera's caption and the key help; no element is parsed, no script runs",
)
def test_every_camera_of_a_two_camera_task_is_shown_and_keys_jog_its_3d_action(procs):
    from peers.two_camera_playground import OVERHEAD, RAISE, TASK
    from selenium.webdriver.common.action_chains import ActionChains

    ns = "/pg2"
    port, web = start(procs, "tests.peers.two_camera_playground", ns)
    robot = FakeRobot(ns, TASK, [0.2, 1.0, 0.0], [(220, 30, 30), (30, 200, 40)])
    browser = chrome()
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        wait_js(browser, "window.hiwm.task && window.hiwm.task.name === 'two_cameras'", 30)
        captions = [e.text for e in browser.find_elements("css selector", "#cameras figure figcaption")]
        assert len(captions) == 2 and captions[0].startswith("wrist") and captions[1].startswith(OVERHEAD), captions
        assert f"{ns}/cams/overhead/image" in captions[1]  # each view says where its frames come from
        robot.pump(browser, "window.hiwm.cameraFrames[0] >= 2 && window.hiwm.cameraFrames[1] >= 2")
        sizes = browser.execute_script(
            "return Array.from(document.querySelectorAll('#cameras canvas')).map(c => [c.width, c.height])"
        )
        assert sizes == [[32, 24], [16, 16]]
        assert pixel(browser, 0)[:3] == [220, 30, 30] and pixel(browser, 1)[:3] == [30, 200, 40]  # each in its view
        help_text = browser.find_element("id", "keys").text
        assert all(s in help_text for s in ("J slide left", "L slide right", f"I {RAISE}", "K lower")), help_text
        time.sleep(0.5)  # an injected <img src=x> would have failed to load and run onerror by now
        assert browser.execute_script("return [window.pwnedCamera, window.pwnedKey, document.images.length]") == [
            None, None, 0
        ]  # fmt: skip
        assert browser.find_element("id", "metric").text == "height"

        browser.find_element("tag name", "body").click()
        ActionChains(browser).key_down("l").pause(0.3).key_up("l").perform()
        assert robot.wait_actions(1), procs.output(web)
        first = robot.actions[0]
        assert first.action_dim == TASK.action_dim == 3 and first.horizon == 1 and first.source == 1
        assert np.allclose(first.data, [0.3, 1.0, 0.0], atol=1e-6)  # one step of L from the reported state
        robot.pump(browser, "window.hiwm.latencies.length >= 1")  # the next frames echo the key's t_client
        ActionChains(browser).key_down("i").pause(0.05).key_up("i").perform()
        assert robot.wait_actions(len(robot.actions) + 1)
        presses = (max(float(a.data[1]) for a in robot.actions) - 1.0) / 0.25  # I raises by its step per message
        assert presses >= 1 and presses == pytest.approx(round(presses), abs=1e-5)
        assert all(a.action_dim == 3 for a in robot.actions)
        wait_js(browser, "window.hiwm.errors.length === 0")
    finally:
        browser.quit()
        robot.node.destroy()
    assert web.poll() is None


@needs_browser
def test_the_arm_task_playground_jogs_the_end_effector_through_ik(procs):
    from selenium.webdriver.common.action_chains import ActionChains

    from hiwm.tasks.jog import Jogger
    from hiwm.tasks.so101.env import So101PickEnv

    task = get_task("so101_pick")
    joints = So101PickEnv(render=False, seed=0).reset(seed=0).joints
    ns = "/pgarm"
    port, web = start(procs, "hiwm.nodes.teleop_web", ns, "task:=so101_pick")
    robot = FakeRobot(ns, task, joints, [(90, 90, 200)])
    jog = Jogger(task)
    browser = chrome()
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        wait_js(browser, "window.hiwm.task && window.hiwm.task.name === 'so101_pick'", 30)
        robot.pump(browser, "window.hiwm.cameraFrames[0] >= 2")
        assert browser.execute_script("return document.querySelectorAll('#cameras canvas').length") == 1
        assert browser.find_element("css selector", "#cameras figcaption").text.startswith("front")
        help_text = browser.find_element("id", "keys").text
        assert all(s in help_text for s in ("W forward", "E up", "C down", "U open", "O close")), help_text

        browser.find_element("tag name", "body").click()
        ActionChains(browser).key_down("e").pause(0.05).key_up("e").perform()
        assert robot.wait_actions(1, 30), procs.output(web)
        first = robot.actions[0]
        assert first.action_dim == task.action_dim == 6 and first.source == 1
        action = np.asarray(first.data, dtype=np.float64)
        assert np.all(action >= task.action.low) and np.all(action <= task.action.high)
        moved = jog.kinematics.position(action) - jog.kinematics.position(jog.hold(joints))
        assert np.allclose(moved, [0.0, 0.0, 0.01], atol=0.001), moved  # E: 1 cm up, through the IK
        robot.node.spin_until(lambda: False, 1.0)  # any repeats of E while it was held
        n = len(robot.actions)
        ActionChains(browser).key_down("u").pause(0.05).key_up("u").perform()
        assert robot.wait_actions(n + 1)
        before, opened = (np.asarray(m.data, dtype=np.float64) for m in robot.actions[n - 1 : n + 1])
        assert opened[5] == pytest.approx(before[5] + 0.15, abs=1e-5)  # U opens the gripper, the arm stays
        assert np.allclose(opened[:5], before[:5])
    finally:
        browser.quit()
        robot.node.destroy()
    assert web.poll() is None


def test_an_unknown_task_is_refused_at_start(procs):
    for module in ("hiwm.nodes.teleop_web", "hiwm.nodes.teleop_keyboard"):
        proc = procs.python(module, "--ros-args", "-p", "task:=nope")
        assert proc.wait(60) == 2, procs.output(proc)
        assert "unknown task 'nope'" in procs.output(proc)


def test_terminal_keyboard_jogs_the_arm_task(procs):
    ns = "/kbarm"
    task = get_task("so101_pick")
    robot_joints = np.array([0.0, -0.5, 0.5, 1.0, 0.0, 0.3])
    robot = FakeRobot(ns, task, robot_joints, [(0, 0, 0)])
    master, slave = os.openpty()
    keyboard = subprocess.Popen(
        [sys.executable, "-m", "hiwm.nodes.teleop_keyboard", "--ros-args", "-r", f"__ns:={ns}", "-p",
         "task:=so101_pick"],
        stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, env=os.environ.copy(),
    )  # fmt: skip
    os.close(slave)
    out = bytearray()

    def read_some() -> str:
        import select

        while select.select([master], [], [], 0.05)[0]:
            try:
                out.extend(os.read(master, 4096))
            except OSError:
                break
        return out.decode(errors="replace")

    try:
        assert wait_for(lambda: "W forward" in read_some() and "U open" in read_some(), 60), read_some()
        deadline = time.monotonic() + 30
        while not robot.actions and time.monotonic() < deadline:  # until the keyboard has seen a state
            robot.publish()
            os.write(master, b"o")
            robot.node.spin_until(lambda: bool(robot.actions), 0.5)
        assert robot.actions, read_some()
        first = robot.actions[0]
        assert first.action_dim == 6 and first.data[5] == pytest.approx(0.15, abs=1e-5)  # O closes by 0.15 rad
        os.write(master, b"q")
        assert keyboard.wait(15) == 0, read_some()
    finally:
        if keyboard.poll() is None:
            keyboard.kill()
        os.close(master)
        robot.node.destroy()
