"""DDS-backend nodes as the real ``ros2`` CLI and rclpy see them.

Node processes run on the DDS backend (no ROS imported); ``ros2`` commands and an rclpy
peer run from the ROS 2 Jazzy core on rmw_cyclonedds_cpp, in this run's domain, with
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` (the DDS backend stays on loopback). Every
command's output is checked for rmw warnings (a missing type hash prints one per endpoint).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, wait_for

from hiwm.comm.dds.node import DdsNode
from hiwm.comm.type_hash import type_hash

ROS_SETUP = Path("/opt/ros/jazzy/setup.sh")
pytestmark = pytest.mark.skipif(
    not ROS_SETUP.is_file(),
    reason="needs the ROS 2 Jazzy core in /opt/ros/jazzy for the ros2 CLI and rclpy (sh ../shared/ros2/install.sh)",
)

WARNINGS = re.compile(r"Failed to parse type hash|\[WARN\]|\[ERROR\]|rmw_cyclonedds_cpp")
CLI_TIMEOUT = 60.0  # seconds to keep retrying one command on a loaded machine


@pytest.fixture(scope="module")
def ros_env() -> dict[str, str]:
    dump = subprocess.run(["bash", "-c", f". {ROS_SETUP} && env -0"], capture_output=True, check=True).stdout
    env = dict(item.split("=", 1) for item in dump.decode().split("\0") if "=" in item)
    env.update(
        RMW_IMPLEMENTATION="rmw_cyclonedds_cpp",
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        ROS_DOMAIN_ID=os.environ["ROS_DOMAIN_ID"],
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]),
        PYTHONUNBUFFERED="1",
    )
    env.pop("CYCLONEDDS_URI", None)
    return env


def ros2(env: dict[str, str], *args: str) -> str:
    """Run one ``ros2`` command; its output must not carry an rmw warning."""
    proc = subprocess.run(["ros2", *args], env=env, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert not WARNINGS.search(out), f"ros2 {' '.join(args)} warned:\n{out}"
    return out


def ros2_until(env: dict[str, str], *args: str, want: str | re.Pattern) -> str:
    """Repeat a command until its output contains ``want`` (discovery takes a while under load)."""
    deadline = time.monotonic() + CLI_TIMEOUT
    while True:
        out = ros2(env, *args)
        if (want.search(out) if isinstance(want, re.Pattern) else want in out) or time.monotonic() > deadline:
            assert want.search(out) if isinstance(want, re.Pattern) else want in out, out
            return out
        time.sleep(0.5)


def start_dds_nodes(procs):
    camera = procs.python("hiwm.nodes.pattern_camera", env={"HIWM_BACKEND": "dds"})
    arbiter = procs.python("hiwm.nodes.arbiter", "--ros-args", "-r", "__ns:=/lab", env={"HIWM_BACKEND": "dds"})
    return camera, arbiter


def test_ros2_node_and_topic_info_see_dds_nodes(procs, ros_env):
    camera, arbiter = start_dds_nodes(procs)
    spin = ("--no-daemon", "--spin-time", "2")
    ros2_until(ros_env, "node", "list", *spin, want=re.compile(r"(?m)^/lab/arbiter$"))
    ros2_until(ros_env, "node", "list", *spin, want=re.compile(r"(?m)^/pattern_camera$"))

    info = ros2_until(ros_env, "node", "info", "/lab/arbiter", *spin, want="/lab/arbiter/set_phase")
    sections = dict(re.findall(r"(?ms)^  (\w[\w ]*):\n(.*?)(?=^  \w|\Z)", info))
    assert "/lab/robot/command: hiwm_msgs/msg/ActionChunk" in sections["Publishers"]
    assert "/lab/arbiter/phase: hiwm_msgs/msg/Phase" in sections["Publishers"]
    assert "/parameter_events: rcl_interfaces/msg/ParameterEvent" in sections["Publishers"]
    assert "/lab/policy/action: hiwm_msgs/msg/ActionChunk" in sections["Subscribers"]
    assert "/lab/robot/state: sensor_msgs/msg/JointState" in sections["Subscribers"]
    assert "/lab/arbiter/set_phase: hiwm_msgs/srv/SetPhase" in sections["Service Servers"]
    for service in ("list", "get", "set", "describe"):
        assert f"/lab/arbiter/{service}_parameters: rcl_interfaces/srv/" in sections["Service Servers"]
    assert "/lab/arbiter/get_parameter_types" in sections["Service Servers"]

    phase = ros2_until(ros_env, "topic", "info", "-v", "/lab/arbiter/phase", *spin, want="Node name: arbiter")
    assert "Node namespace: /lab" in phase
    assert f"Topic type hash: {type_hash('hiwm_msgs/msg/Phase')}" in phase
    assert "Durability: TRANSIENT_LOCAL" in phase

    image = ros2_until(ros_env, "topic", "info", "-v", "/image", *spin, want="Node name: pattern_camera")
    assert f"Topic type hash: {type_hash('sensor_msgs/msg/Image')}" in image
    assert "Reliability: BEST_EFFORT" in image

    services = ros2(ros_env, "service", "list", "-t", *spin)
    assert "/pattern_camera/enable [std_srvs/srv/SetBool]" in services
    assert "/lab/arbiter/set_phase [hiwm_msgs/srv/SetPhase]" in services
    assert camera.poll() is None and arbiter.poll() is None
    for proc in (camera, arbiter):
        assert "Traceback" not in procs.output(proc)

    # A stopped process takes its nodes with it.
    arbiter.terminate()
    arbiter.wait(20)
    ros2_until(
        ros_env, "node", "list", *spin, want=re.compile(r"\A(?!.*^/lab/arbiter$).*^/pattern_camera$", re.S | re.M)
    )


def test_ros2_param_lists_gets_and_sets_dds_node_parameters(procs, ros_env):
    camera = procs.python("hiwm.nodes.pattern_camera", "--ros-args", "-p", "width:=64", env={"HIWM_BACKEND": "dds"})
    spin = ("--no-daemon", "--spin-time", "2")
    listing = ros2_until(ros_env, "param", "list", "/pattern_camera", *spin, want="rate_hz")
    assert {"width", "height", "rate_hz", "frame_id", "qos", "use_sim_time"} <= set(listing.split()), listing

    assert "Integer value is: 64" in ros2(ros_env, "param", "get", "/pattern_camera", "width", *spin)
    assert "Double value is: 10.0" in ros2(ros_env, "param", "get", "/pattern_camera", "rate_hz", *spin)
    assert "String value is: camera" in ros2(ros_env, "param", "get", "/pattern_camera", "frame_id", *spin)
    assert "Boolean value is: False" in ros2(ros_env, "param", "get", "/pattern_camera", "use_sim_time", *spin)
    assert "Type: integer" in ros2(ros_env, "param", "describe", "/pattern_camera", "width", *spin)

    events: list = []
    with DdsNode("param_event_probe") as probe:
        probe.create_subscription("rcl_interfaces/msg/ParameterEvent", "/parameter_events", events.append, 1000)
        out = ros2(ros_env, "param", "set", "/pattern_camera", "rate_hz", "4.5", *spin)
        assert "Set parameter successful" in out, out
        assert probe.spin_until(lambda: any(e.node == "/pattern_camera" for e in events), 20)
    (event,) = [e for e in events if e.node == "/pattern_camera"]
    assert [(p.name, p.value.double_value) for p in event.changed_parameters] == [("rate_hz", 4.5)]
    assert "Double value is: 4.5" in ros2(ros_env, "param", "get", "/pattern_camera", "rate_hz", *spin)

    refused = ros2(ros_env, "param", "set", "/pattern_camera", "width", "wide", *spin)
    assert "Setting parameter failed: Wrong parameter type, expected 'Type.INTEGER' got 'Type.STRING'" in refused
    assert "Integer value is: 64" in ros2(ros_env, "param", "get", "/pattern_camera", "width", *spin)
    assert "Setting parameter failed" in ros2(ros_env, "param", "set", "/pattern_camera", "no_such", "1", *spin)
    assert "Setting parameter failed" in ros2(ros_env, "param", "set", "/pattern_camera", "use_sim_time", "true", *spin)
    dump = ros2(ros_env, "param", "dump", "/pattern_camera", *spin)
    assert "rate_hz: 4.5" in dump and "width: 64" in dump, dump
    assert camera.poll() is None, procs.output(camera)


def test_nodes_and_endpoints_created_and_destroyed_in_a_process_update_the_graph(ros_env):
    spin = ("--no-daemon", "--spin-time", "2")
    node = DdsNode("graph_probe", namespace="/probe")
    try:
        ros2_until(ros_env, "node", "list", *spin, want="/probe/graph_probe")
        node.create_publisher("sensor_msgs/msg/JointState", "late_state")
        info = ros2_until(ros_env, "node", "info", "/probe/graph_probe", *spin, want="/probe/late_state")
        assert "/probe/late_state: sensor_msgs/msg/JointState" in info
    finally:
        node.destroy()
    ros2_until(ros_env, "node", "list", *spin, want=re.compile(r"\A(?!.*graph_probe).*\Z", re.S))


def test_rclpy_peer_exchanges_with_dds_nodes_without_warnings(procs, ros_env):
    camera = procs.python("hiwm.nodes.pattern_camera", env={"HIWM_BACKEND": "dds"})
    peer = procs.start(sys.executable, str(ROOT / "tests" / "peers" / "rclpy_peer.py"), env=ros_env, name="rclpy")
    reports: list = []
    with DdsNode("peer_listener") as node:
        node.create_subscription("std_msgs/msg/String", "/chatter", reports.append)
        seen = node.spin_until(lambda: any(r.data != "frames 0" for r in reports), 60)
    assert seen, f"rclpy peer reports {[r.data for r in reports[-3:]]}\n{procs.output(peer)}"
    assert wait_for(lambda: peer.poll() is None, 1)
    log = procs.output(peer)
    assert not WARNINGS.search(log), log
    assert camera.poll() is None, procs.output(camera)


def test_ros2_param_set_reaches_get_parameter_on_both_backends(ros_env):
    import importlib.util
    import threading

    if importlib.util.find_spec("rclpy") is None:
        pytest.skip("rclpy backend: run with ROS sourced (. /opt/ros/jazzy/setup.sh)")
    from hiwm.comm.ros import RclpyNode

    spin = ("--no-daemon", "--spin-time", "2")
    for make in (DdsNode, RclpyNode):
        node = make(f"sync_probe_{make.backend}")
        node.declare_parameter("gain", 1.0)
        seen: list = []
        node.add_on_set_parameters_callback(seen.append)
        stop = threading.Event()

        def spin_until_stopped(n=node, s=stop) -> None:
            while not s.is_set():
                n.spin_once(0.05)

        spinner = threading.Thread(target=spin_until_stopped)
        spinner.start()
        try:
            fqn = f"/sync_probe_{make.backend}"
            out = ros2_until(ros_env, "param", "set", fqn, "gain", "2.5", *spin, want="Set parameter successful")
            assert node.get_parameter("gain") == 2.5 and {"gain": 2.5} in seen, out
            assert "Setting parameter failed" in ros2(ros_env, "param", "set", fqn, "gain", "loud", *spin)
            assert node.get_parameter("gain") == 2.5
        finally:
            stop.set()
            spinner.join(10)
            node.destroy()
