"""The messaging contract over real DDS between separate processes.

Run against each backend: ``dds`` always, ``rclpy`` where ROS 2 is installed.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import ROOT, require, wait_for

from hiwm.comm import KEEP_ALL, new_message
from hiwm.comm.images import numpy_to_image
from hiwm.comm.interfaces import serialize

BACKENDS = ["dds", "rclpy"]


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    if request.param == "rclpy":
        require(importlib.util.find_spec("rclpy") is not None, "rclpy is not importable (no ROS 2 on this machine)")
    monkeypatch.setenv("HIWM_BACKEND", request.param)
    return request.param


@pytest.fixture
def node(backend):
    from hiwm.comm import create_node

    n = create_node(f"test_{backend}")
    yield n
    n.destroy()


def start_relay(procs, msg_type: str, name: str = "relay"):
    return procs.python("tests.peers.relay", "--ros-args", "-r", f"__node:={name}", "-p", f"type:={msg_type}")


def count_of(node, relay: str = "relay") -> int:
    client = node.create_client("std_srvs/srv/Trigger", f"/{relay}/count")
    response = client.call(new_message("std_srvs/srv/Trigger_Request"), timeout=10)
    assert response.success
    return int(response.message)


def relay_roundtrip(node, procs, msg_type: str, messages: list) -> list:
    relay = start_relay(procs, msg_type)
    got: list = []
    pub = node.create_publisher(msg_type, "/in", KEEP_ALL)
    sub = node.create_subscription(msg_type, "/out", got.append, KEEP_ALL)
    assert node.spin_until(lambda: pub.matched_count() > 0, 20), procs.output(relay)
    node.spin_until(lambda: False, 0.3)  # let the relay's publisher match our subscriber too
    for msg in messages:
        pub.publish(msg)
    assert node.spin_until(lambda: len(got) == len(messages), 20), f"{len(got)}/{len(messages)}"
    assert sub.topic == "/out"
    return got


def test_images_cross_processes_losslessly(node, procs):
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (96, 96, 3), dtype=np.uint8) for _ in range(50)]
    sent = [numpy_to_image(f, node.header("cam")) for f in frames]
    got = relay_roundtrip(node, procs, "sensor_msgs/msg/Image", sent)
    for frame, msg in zip(frames, got, strict=True):
        assert (msg.height, msg.width, msg.encoding) == (96, 96, "rgb8")
        assert np.array_equal(np.asarray(msg.data).reshape(96, 96, 3), frame)
    assert count_of(node) == 50


def test_hiwm_messages_cross_processes(node, procs):
    sent = [
        new_message(
            "hiwm_msgs/msg/ActionChunk",
            header=node.header("pusht"),
            source=1,
            source_id="operator-7",
            horizon=8,
            action_dim=2,
            dt=0.1,
            data=np.arange(16, dtype=np.float32) + i,
        )
        for i in range(20)
    ]
    got = relay_roundtrip(node, procs, "hiwm_msgs/msg/ActionChunk", sent)
    assert [m.data[0] for m in got] == list(range(20))
    assert got[5].source_id == "operator-7" and got[5].horizon == 8 and got[5].source == got[5].SOURCE_HUMAN


def test_service_round_trip_and_errors(node, procs):
    camera = procs.python("hiwm.nodes.pattern_camera", "--ros-args", "-p", "rate_hz:=50.0")
    client = node.create_client("std_srvs/srv/SetBool", "/pattern_camera/enable")
    assert client.wait_for_service(20), procs.output(camera)
    for flag in (False, True, False):
        response = client.call(new_message("std_srvs/srv/SetBool_Request", data=flag), timeout=5)
        assert response.success and response.message == ("on" if flag else "off")
    missing = node.create_client("std_srvs/srv/Trigger", "/nobody/here")
    from hiwm.comm import ServiceCallError

    with pytest.raises(ServiceCallError, match="not available"):
        missing.call(new_message("std_srvs/srv/Trigger_Request"), timeout=0.5)
    with pytest.raises(TypeError, match="takes std_srvs/srv/SetBool_Request"):
        client.call(new_message("std_srvs/srv/Trigger_Request"))


def test_callbacks_run_one_at_a_time_on_the_spinning_thread(node, procs):
    """Both backends: node code (a SQLite store, a recorder's files) never sees two callbacks at once."""
    start_relay(procs, "std_msgs/msg/String")
    client = node.create_client("std_srvs/srv/Trigger", "/relay/count")
    assert client.wait_for_service(20), procs.output(procs.procs[0])
    threads, running, overlaps, answers = set(), [0], [0], []

    def guarded(work):
        def callback(*_args):
            running[0] += 1
            overlaps[0] += running[0] > 1
            threads.add(threading.get_ident())
            try:
                work()
            finally:
                running[0] -= 1

        return callback

    pub = node.create_publisher("std_msgs/msg/String", "/in", KEEP_ALL)
    node.create_subscription("std_msgs/msg/String", "/out", guarded(lambda: time.sleep(0.005)), KEEP_ALL)
    node.create_timer(0.01, guarded(lambda: pub.publish(new_message("std_msgs/msg/String", data="x"))))
    trigger = new_message("std_srvs/srv/Trigger_Request")
    node.create_timer(0.05, guarded(lambda: answers.append(client.call(trigger, timeout=10))))  # blocks in a callback
    assert node.spin_until(lambda: len(answers) >= 5 and int(answers[-1].message) > 0, 60)
    assert threads == {threading.get_ident()} and overlaps[0] == 0


def test_a_node_left_undestroyed_with_a_client_exits_cleanly(backend):
    """A script that never calls destroy() still exits 0 (rclpy's client thread once made it abort)."""
    script = (
        "from hiwm.comm import create_node\n"
        "node = create_node('undestroyed')\n"
        "node.create_client('std_srvs/srv/Trigger', '/nobody')\n"
        "node.spin_until(lambda: False, 0.5)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]


def test_wire_bytes_are_rosbags_cdr(procs):
    """What a hiwm process puts on the wire, taken raw by a plain Cyclone reader, is serialize_cdr's output."""
    from cyclonedds.sub import DataReader
    from cyclonedds.topic import Topic

    from hiwm.comm.dds.idl import idl_class
    from hiwm.comm.dds.node import _Process, _take_raw, _unpad, dds_qos

    relay = start_relay(procs, "sensor_msgs/msg/JointState")
    proc = _Process.get()
    cls = idl_class("sensor_msgs/msg/JointState")
    reader = DataReader(proc.participant, Topic(proc.participant, "rt/out", cls), qos=dds_qos(KEEP_ALL))
    from cyclonedds.pub import DataWriter

    # A plain Cyclone writer with the binding's own serializer, as another DDS app would send it.
    writer = DataWriter(proc.participant, Topic(proc.participant, "rt/in", cls), qos=dds_qos(KEEP_ALL))
    assert wait_for(lambda: writer.get_matched_subscriptions() and reader.get_matched_publications(), 20), procs.output(
        relay
    )
    sample = cls(
        header=idl_class("std_msgs/msg/Header")(stamp=idl_class("builtin_interfaces/msg/Time")(3, 4), frame_id="arm"),
        name=["j1", "j2"],
        position=[0.5, 1.5],
        velocity=[],
        effort=[2.0],
    )
    writer.write(sample)
    taken: list[bytes] = []
    assert wait_for(lambda: taken.extend(_take_raw(reader)) or taken, 10)
    expected = new_message(
        "sensor_msgs/msg/JointState",
        header=new_message(
            "std_msgs/msg/Header", stamp=new_message("builtin_interfaces/msg/Time", sec=3, nanosec=4), frame_id="arm"
        ),
        name=["j1", "j2"],
        position=np.array([0.5, 1.5]),
        velocity=np.zeros(0),
        effort=np.array([2.0]),
    )
    assert _unpad(taken[0]) == serialize(expected)
    assert taken[0][:2] == b"\x00\x01"  # XCDR1, little endian: what ROS 2 reads


def test_malformed_payloads_are_dropped_and_the_node_keeps_running(node, procs):
    relay = start_relay(procs, "hiwm_msgs/msg/ActionChunk")
    monitor = procs.python("hiwm.nodes.image_monitor")
    chunk_pub = node.create_publisher("hiwm_msgs/msg/ActionChunk", "/in", KEEP_ALL)
    image_pub = node.create_publisher("sensor_msgs/msg/Image", "/image", KEEP_ALL)
    assert node.spin_until(lambda: chunk_pub.matched_count() and image_pub.matched_count(), 20)

    good = new_message(
        "hiwm_msgs/msg/ActionChunk", source_id="abcd", horizon=1, action_dim=2, data=np.ones(2, np.float32)
    )
    bad = bytearray(serialize(good))
    bad[bad.index(b"abcd")] = 0xFF  # valid CDR, invalid UTF-8: passes DDS, must fail decoding
    chunk_pub.publish_raw(bytes(bad))  # both backends put raw CDR on the wire as given
    chunk_pub.publish(good)
    assert wait_for(lambda: count_of(node) == 1, 10)
    assert wait_for(lambda: "dropped message on /in" in procs.output(relay), 5), procs.output(relay)

    wrong = numpy_to_image(np.zeros((64, 80, 3), np.uint8))  # monitor expects 96x96
    broken = numpy_to_image(np.zeros((96, 96, 3), np.uint8))
    broken.data = broken.data[:-7]  # a frame whose data disagrees with its header
    for msg in (wrong, broken, numpy_to_image(np.zeros((96, 96, 3), np.uint8), node.header())):
        image_pub.publish(msg)
    stats_client = node.create_client("std_srvs/srv/Trigger", "/image_monitor/stats")

    def stats() -> dict:
        return json.loads(stats_client.call(new_message("std_srvs/srv/Trigger_Request"), timeout=10).message)

    assert wait_for(lambda: stats()["received"] == 1 and stats()["refused"] == 2, 10)
    assert relay.poll() is None and monitor.poll() is None
    assert "refused frame" in procs.output(monitor)


def test_bad_parameter_file_stops_the_node_with_the_key_named(tmp_path):
    params = tmp_path / "camera.yaml"
    params.write_text("pattern_camera:\n  ros__parameters:\n    width: ninety-six\n")
    result = subprocess.run(
        [sys.executable, "-m", "hiwm.nodes.pattern_camera", "--ros-args", "--params-file", str(params)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "'width'" in result.stderr + result.stdout and "must be int" in result.stderr + result.stdout


def test_topic_cli_sees_other_processes(procs):
    procs.python("hiwm.nodes.pattern_camera", "--ros-args", "-p", "rate_hz:=20.0")
    listing = subprocess.run(
        [sys.executable, "-m", "hiwm.cli.main", "topic", "list", "-t", "--wait", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert "/image [sensor_msgs/msg/Image]" in listing.stdout, listing.stderr
    services = subprocess.run(
        [sys.executable, "-m", "hiwm.cli.main", "service", "list", "-t"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert "/pattern_camera/enable [std_srvs/srv/SetBool]" in services.stdout
    echo = subprocess.run(
        [sys.executable, "-m", "hiwm.cli.main", "topic", "echo", "/image", "--count", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    frames = [json.loads(line) for line in echo.stdout.splitlines()]
    assert echo.returncode == 0 and len(frames) == 2 and frames[0]["width"] == 96
    hz = subprocess.run(
        [sys.executable, "-m", "hiwm.cli.main", "topic", "hz", "/image", "--duration", "3.5", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    rates = [json.loads(line)["rate_hz"] for line in hz.stdout.splitlines() if line.startswith("{")]
    assert rates and 15 < rates[-1] < 25, hz.stdout
