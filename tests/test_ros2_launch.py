"""Every launch graph under real ``ros2 launch``, every node under ``ros2 run``, from the colcon-built workspace.

Needs a sourced ROS 2 tree and workspace (tools/test.sh builds and sources both). The graphs run on rclpy
(the ROS 2 path), the demo also on the DDS backend; the test's own node is a DDS-backend one, so each
observation also crosses backends. Ctrl-C is what a user sends: SIGINT to the launcher (which forwards it)
or to the process group of ``ros2 run`` (which, like a terminal, leaves the node to get it directly).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import test_hiwm_graph
import yaml
from conftest import require, wait_for
from test_launch import alive
from test_layout import setup_nodes
from test_leader_arm import Emulator, calibration_doc
from test_playground import free_port

from hiwm.comm import KEEP_ALL, ServiceCallError, create_node, new_message
from hiwm.tasks import DEFAULT_TASK, get_task

checkpoints = test_hiwm_graph.checkpoints  # the fixture: a tiny world model and policy
CAMERA = get_task(DEFAULT_TASK).cameras[0].topic  # the default task's camera: camera/camera/color/image_raw
STARTED = re.compile(r"\[INFO\] \[(\S+)\]: process started with pid \[(\d+)\]")
GRAPH_BACKEND = "rclpy"


def _workspace_built() -> bool:
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("hiwm"), "launch", "demo.launch.py").is_file()
    except Exception:
        return False


@pytest.fixture(scope="module", autouse=True)
def ros2_tree():
    require(shutil.which("ros2") is not None, "the ros2 command is not on PATH (no ROS 2 sourced)")
    require(importlib.util.find_spec("launch_ros") is not None, "launch_ros is not importable")
    require(_workspace_built(), "hiwm is not in the ament index: build and source the workspace (tools/test.sh)")


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``, from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[0] != "Z":
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


class Ros2:
    """``ros2`` processes, each in its own session; every group is stopped at the end, whatever happened."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []
        self.env = {**os.environ, "ROS_LOG_DIR": str(tmp / "ros_log")}

    def start(self, *args: str, backend: str = GRAPH_BACKEND, stdin=None) -> subprocess.Popen:
        log = self.tmp / f"ros2-{len(self.procs)}-{args[0]}.log"
        # the interpreter running the tests runs ros2 too: one Python, one set of packages
        proc = subprocess.Popen(
            [sys.executable, shutil.which("ros2"), *args],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            env={**self.env, "HIWM_BACKEND": backend},
            cwd=self.tmp,
            start_new_session=True,
        )
        proc.log_path = log  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """A one-shot ``ros2`` command that never starts (or uses) the ros2 daemon."""
        return subprocess.run(
            [sys.executable, shutil.which("ros2"), *args, "--no-daemon"],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            cwd=self.tmp,
        )

    @staticmethod
    def output(proc: subprocess.Popen) -> str:
        return proc.log_path.read_text(errors="replace")  # type: ignore[attr-defined]

    def stop_all(self) -> None:
        for sig, wait in ((signal.SIGINT, 15), (signal.SIGKILL, 5)):
            for proc in self.procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
            deadline = time.monotonic() + wait
            for proc in self.procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(max(0.1, deadline - time.monotonic()))


@pytest.fixture
def ros2(tmp_path) -> Iterator[Ros2]:
    r = Ros2(tmp_path)
    try:
        yield r
    finally:
        r.stop_all()


@pytest.fixture
def watcher() -> Iterator:
    node = create_node("ros2_launch_test")  # the test's node: DDS backend (tests/conftest.py)
    yield node
    node.destroy()


def watch(node, msg_type: str, topic: str, qos: object = KEEP_ALL) -> list:
    got: list = []
    node.create_subscription(msg_type, topic, got.append, qos)
    return got


def trigger(node, service: str, timeout: float = 90) -> dict:
    """A ``~/stats`` answer as JSON; one client per service and node, and a lost reply is asked again."""
    clients = node.__dict__.setdefault("test_clients", {})
    if service not in clients:
        clients[service] = node.create_client("std_srvs/srv/Trigger", service)
    client = clients[service]
    assert client.wait_for_service(timeout), f"{service} did not come up"
    deadline = time.monotonic() + timeout
    while True:
        try:
            return json.loads(client.call(new_message("std_srvs/srv/Trigger_Request"), timeout=15).message)
        except ServiceCallError:
            if time.monotonic() > deadline:
                raise


def stop_launch(ros2: Ros2, launcher: subprocess.Popen, nodes: int) -> str:
    """SIGINT to ``ros2 launch``: exit 0, every node finished cleanly, no traceback, nothing left behind."""
    out = ros2.output(launcher)
    pids = {int(pid) for _, pid in STARTED.findall(out)}
    assert len(pids) == nodes, out
    below = descendants(launcher.pid)
    assert pids <= below, out
    launcher.send_signal(signal.SIGINT)
    assert launcher.wait(60) == 0, ros2.output(launcher)
    out = ros2.output(launcher)
    assert "Traceback" not in out, out
    assert out.count("process has finished cleanly") == nodes, out
    assert wait_for(lambda: not any(alive(p) for p in below), 15), [p for p in below if alive(p)]
    return out


@pytest.mark.parametrize("backend", ["rclpy", "dds"])
def test_demo_under_ros2_launch(ros2, watcher, backend):
    """Launch arguments and the package's YAML (config/demo.yaml) both reach the nodes."""
    images = watch(watcher, "sensor_msgs/msg/Image", "/image", "sensor_data")
    launcher = ros2.start("launch", "hiwm", "demo.launch.py", "width:=64", "height:=48", backend=backend)
    assert watcher.spin_until(lambda: len(images) >= 3, 90), ros2.output(launcher)
    assert (images[-1].width, images[-1].height) == (64, 48)  # launch arguments, through launch_ros's YAML
    assert wait_for(lambda: trigger(watcher, "/image_monitor/stats")["received"] >= 3, 30)
    assert trigger(watcher, "/image_monitor/stats")["refused"] == 0  # the monitor expects 64x48 too
    assert f"running on the {backend} backend" in ros2.output(launcher)
    # config/demo.yaml sets report_period_s 1.0 (the node's default is 5.0): reports come about every second
    stamps = lambda: [  # noqa: E731
        float(t)
        for t in re.findall(r"\[image_monitor-\d+\] \[INFO\] \[([\d.]+)\] \[image_monitor\]: \{", ros2.output(launcher))
    ]
    assert wait_for(lambda: len(stamps()) >= 5, 60), ros2.output(launcher)
    assert float(np.median(np.diff(stamps()))) < 3.0, stamps()
    if backend == "rclpy":
        got = ros2.cli("param", "get", "/image_monitor", "report_period_s")
        assert got.returncode == 0 and "1.0" in got.stdout, got.stdout + got.stderr
        got = ros2.cli("param", "get", "/pattern_camera", "width")
        assert got.returncode == 0 and "64" in got.stdout, got.stdout + got.stderr
    stop_launch(ros2, launcher, nodes=2)


def test_sim_under_ros2_launch_records(ros2, watcher, tmp_path):
    images = watch(watcher, "sensor_msgs/msg/Image", f"/p/{CAMERA}")
    states = watch(watcher, "sensor_msgs/msg/JointState", "/p/robot/state")
    launcher = ros2.start(
        "launch", "hiwm", "sim.launch.py", "namespace:=/p", "record:=true", "seed:=3",
        f"dataset:={tmp_path / 'ds'}", f"bag:={tmp_path / 'bag'}",
    )  # fmt: skip
    assert watcher.spin_until(lambda: len(images) >= 5 and len(states) >= 5, 120), ros2.output(launcher)
    assert images[-1].height == images[-1].width == 96
    reset = watcher.create_client("hiwm_msgs/srv/Reset", "/p/robot/reset")
    assert (
        reset.wait_for_service(30)
        and reset.call(new_message("hiwm_msgs/srv/Reset_Request", seed=4), timeout=20).success
    )
    assert wait_for(lambda: trigger(watcher, "/p/recorder/stats")["bag_messages"].get(f"/p/{CAMERA}", 0) >= 5, 60)
    stop_launch(ros2, launcher, nodes=2)
    assert list((tmp_path / "bag").glob("*.mcap"))  # the recorder finished its bag on SIGINT


def test_world_model_under_ros2_launch(ros2, watcher, checkpoints):
    wm, _ = checkpoints
    images = watch(watcher, "sensor_msgs/msg/Image", f"/w/{CAMERA}")
    launcher = ros2.start("launch", "hiwm", "world_model.launch.py", f"checkpoint:={wm}", "namespace:=/w")
    assert watcher.spin_until(lambda: len(images) >= 3, 120), ros2.output(launcher)
    assert wait_for(lambda: trigger(watcher, "/w/camera_monitor/stats")["received"] >= 3, 60)
    stop_launch(ros2, launcher, nodes=2)


def test_policy_robot_under_ros2_launch(ros2, watcher, checkpoints):
    _, policy = checkpoints
    commands = watch(watcher, "hiwm_msgs/msg/ActionChunk", "/pr/robot/command")
    launcher = ros2.start("launch", "hiwm", "policy_robot.launch.py", f"policy:={policy}", "namespace:=/pr")
    assert watcher.spin_until(lambda: len(commands) >= 2, 180), ros2.output(launcher)
    assert commands[-1].action_dim == 2 and commands[-1].source == 0  # the policy's chunks drive the robot
    stop_launch(ros2, launcher, nodes=2)


def test_ros2_launch_refuses_the_arm_without_its_task(ros2):
    launcher = ros2.start("launch", "hiwm", "hiwm.launch.py", "world:=real", "robot:=so101", "namespace:=/refused")
    assert launcher.wait(90) != 0
    out = ros2.output(launcher)
    assert "needs task:=so101_pick" in out and "add task:=so101_pick" in out, out
    assert not STARTED.findall(out), out  # refused before any node started


@pytest.mark.parametrize("world", ["model", "real"])
def test_hiwm_graph_under_ros2_launch(ros2, watcher, checkpoints, tmp_path, world):
    wm, policy = checkpoints
    ns = f"/h{world}"
    commands = watch(watcher, "hiwm_msgs/msg/ActionChunk", f"{ns}/robot/command")
    phases = watch(watcher, "hiwm_msgs/msg/Phase", f"{ns}/arbiter/phase")
    extra = [f"world_model:={wm}"] if world == "model" else ["robot:=sim"]
    launcher = ros2.start(
        "launch", "hiwm", "hiwm.launch.py", f"world:={world}", *extra, f"policy:={policy}", f"namespace:={ns}",
        f"port:={free_port()}", f"dataset:={tmp_path / 'ds'}", f"bag:={tmp_path / 'bag'}",
        f"db:={tmp_path / 'cache.db'}",
    )  # fmt: skip
    # the policy's chunks pass the arbiter onto the world's command topic; the latched phase reaches us
    assert watcher.spin_until(lambda: len(commands) >= 2 and phases, 180), ros2.output(launcher)
    assert phases[-1].phase == phases[-1].AUTONOMOUS
    assert trigger(watcher, f"{ns}/policy_server/stats")["queries"] >= 1
    assert wait_for(
        lambda: trigger(watcher, f"{ns}/recorder/stats")["bag_messages"].get(f"{ns}/robot/command", 0) >= 1, 60
    )
    if world == "model":
        handles = watch(watcher, "hiwm_msgs/msg/StateHandle", f"{ns}/world_model/state")
        assert watcher.spin_until(lambda: len(handles) >= 1, 60)
    stop_launch(ros2, launcher, nodes=6)


# --- ros2 run: every node in setup.py ------------------------------------------------------------


def node_args(name: str, tmp: Path, checkpoints, emulator_link: Path) -> list[str]:
    """``--ros-args`` that let each node come up here, in a namespace of its own."""
    wm, policy = checkpoints
    params = {
        "pattern_camera": ["--params-file", str(tmp / "camera.yaml")],
        "recorder": ["-p", f"dataset:={tmp / 'ds'}", "-p", f"bag:={tmp / 'bag'}"],
        "teleop_web": ["-p", f"port:={free_port()}"],
        "branch_cache": ["-p", f"db:={tmp / 'cache.db'}"],
        "leader_arm": ["-p", f"calibration:={tmp / 'cal.yaml'}"],
        "policy_server": ["-p", f"policy:={policy}"],
        "world_model": ["-p", f"checkpoint:={wm}"],
    }
    return ["--ros-args", "-r", f"__ns:=/run_{name}", *params.get(name, [])]


#: What shows a node is up: an endpoint of it, seen by the test's node through DDS discovery.
ENDPOINT = {
    "pattern_camera": "image",
    "image_monitor": "image_monitor/stats",
    "sim_robot": CAMERA,
    "recorder": "recorder/stats",
    "arbiter": "arbiter/set_phase",
    "teleop_web": CAMERA,
    "teleop_keyboard": "operator/action",
    "branch_cache": "branch_cache/rollback",
    "leader_arm": "leader/joint_states",
    "ros2_control_bridge": "robot/state",
    "policy_server": "policy_server/stats",
    "world_model": "world_model/restore",
    "arm_robot": "task/status",
}
NEEDS_HARDWARE = {"realsense_camera"}  # pyrealsense2 and a camera: it must refuse clearly instead


def test_ros2_run_starts_every_node(ros2, watcher, checkpoints, tmp_path):
    from hiwm.comm.dds.graph import discover

    assert set(ENDPOINT) | NEEDS_HARDWARE == set(setup_nodes())
    (tmp_path / "camera.yaml").write_text(
        yaml.safe_dump({"/**": {"ros__parameters": {"width": 40, "height": 30, "rate_hz": 20.0}}})
    )
    emu = Emulator("feetech", tmp_path / "leader_bus", [2048, 2048, 1000])
    (tmp_path / "cal.yaml").write_text(yaml.safe_dump(calibration_doc("feetech", str(emu.link))))
    keyboard_tty, keyboard_pty = pty.openpty()  # teleop_keyboard reads keys from a terminal
    try:
        images = watch(watcher, "sensor_msgs/msg/Image", "/run_pattern_camera/image", "sensor_data")
        runs = {
            name: ros2.start(
                "run", "hiwm", name, *node_args(name, tmp_path, checkpoints, emu.link),
                stdin=keyboard_pty if name == "teleop_keyboard" else None,
            )
            for name in setup_nodes()
        }  # fmt: skip
        wanted = {f"/run_{name}/{endpoint}" for name, endpoint in ENDPOINT.items()}

        def missing() -> set[str]:
            return wanted - set(discover(wait=1.0))

        assert wait_for(lambda: not missing(), 180, interval=1.0), {
            n: ros2.output(runs[n])[-800:] for n in ENDPOINT if f"/run_{n}/{ENDPOINT[n]}" in missing()
        }
        # the parameter file reached pattern_camera
        assert watcher.spin_until(lambda: len(images) >= 2, 30)
        assert (images[-1].width, images[-1].height) == (40, 30)
        listed = ros2.cli("node", "list", "--spin-time", "5")
        assert {f"/run_{name}/{name}" for name in ENDPOINT} <= set(listed.stdout.split()), listed.stdout
        # no camera here: the RealSense node ends at once, saying why, without a traceback
        realsense = runs.pop("realsense_camera")
        assert realsense.wait(120) != 0
        log = ros2.output(realsense)
        assert (
            "pyrealsense2 cannot be loaded" in log or "no RealSense camera attached" in log
        ) and "Traceback" not in log
        # Ctrl-C, as a terminal sends it: to the whole process group
        below = {name: descendants(proc.pid) for name, proc in runs.items()}
        for proc in runs.values():
            os.killpg(proc.pid, signal.SIGINT)
        for name, proc in runs.items():
            assert proc.wait(60) == 0, f"{name}: {ros2.output(proc)[-2000:]}"
            assert "Traceback" not in ros2.output(proc), ros2.output(proc)
        assert wait_for(lambda: not any(alive(p) for pids in below.values() for p in pids), 15)
    finally:
        os.close(keyboard_tty)
        os.close(keyboard_pty)
        emu.stop()
