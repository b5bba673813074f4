"""Images of zero, inconsistent or absurd size, published to the nodes that decode camera frames.

Each node runs in its own process over real DDS; a bad frame is refused at decode with a throttled
warning, the node stays up and serves the next good frame.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from conftest import wait_for
from test_playground import PUSHT_CAMERA, free_port
from test_policy_server import tiny_policy

from hiwm.comm import InterfaceError, create_node, new_message
from hiwm.comm.images import MAX_SIDE, image_to_numpy, numpy_to_image
from hiwm.comm.qos import KEEP_ALL

NS = "/badimg"


def image(height: int, width: int, step: int, data: bytes, stamp: int = 1):
    return new_message(
        "sensor_msgs/msg/Image",
        header=new_message("std_msgs/msg/Header", stamp=new_message("builtin_interfaces/msg/Time", sec=stamp)),
        height=height, width=width, encoding="rgb8", step=step, data=np.frombuffer(data, np.uint8),
    )  # fmt: skip


def joint_state(header):
    return new_message("sensor_msgs/msg/JointState", header=header, position=np.array([100.0, 100.0]))


BAD = {  # height, width, step, data
    "0x0": (0, 0, 0, b""),
    "0 rows": (0, 8, 24, b""),
    "0 columns": (8, 0, 0, b""),
    "step under the row": (4, 4, 6, bytes(24)),
    "data short of height*step": (4, 4, 12, bytes(40)),
    "data over height*step": (4, 4, 12, bytes(60)),
    "absurd width": (1, MAX_SIDE + 1, 3 * (MAX_SIDE + 1), bytes(3 * (MAX_SIDE + 1))),
    "absurd height, no data": (2**32 - 1, 1, 0, b""),
}


@pytest.mark.parametrize("case", list(BAD))
def test_decode_refuses_empty_and_inconsistent_images(case):
    with pytest.raises(InterfaceError):
        image_to_numpy(image(*BAD[case]))


def test_decode_keeps_padded_rows():
    frame = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    padded = np.zeros((2, 12), np.uint8)
    padded[:, :9] = frame.reshape(2, 9)
    assert np.array_equal(image_to_numpy(image(2, 3, 12, padded.tobytes())), frame)


@pytest.mark.probe(
    "0x0, empty, inconsistent and absurd camera frames to running teleop_web, policy_server, image_monitor, recorder",
    "refused at decode with a throttled warning; every node stays up and serves the next good frame",
)
def test_nodes_that_decode_frames_survive_bad_ones(procs, tmp_path):
    from websockets.sync.client import connect

    port = free_port()
    ros = ["--ros-args", "-r", f"__ns:={NS}"]
    web = procs.python("hiwm.nodes.teleop_web", *ros, "-p", f"port:={port}")
    server = procs.python(
        "hiwm.nodes.policy_server", *ros, "-p", f"policy:={tiny_policy(tmp_path / 'policy')}",
        "-p", "use_status:=false", "-p", "image_size:=16",
    )  # fmt: skip
    monitor = procs.python("hiwm.nodes.image_monitor", *ros, "-r", f"image:={PUSHT_CAMERA}", "-p", "width:=16",
                           "-p", "height:=16", "-p", "qos:=keep_all")  # fmt: skip
    recorder = procs.python("hiwm.nodes.recorder", *ros, "-p", f"dataset:={tmp_path / 'ds'}", "-p", "image_size:=16")
    node = create_node("bad_images_test")
    actions: list = []
    node.create_subscription("hiwm_msgs/msg/ActionChunk", f"{NS}/policy/action", actions.append, KEEP_ALL)
    images = node.create_publisher("sensor_msgs/msg/Image", f"{NS}/{PUSHT_CAMERA}", KEEP_ALL)
    states = node.create_publisher("sensor_msgs/msg/JointState", f"{NS}/robot/state", KEEP_ALL)
    stats = node.create_client("std_srvs/srv/Trigger", f"{NS}/policy_server/stats")
    monitor_stats = node.create_client("std_srvs/srv/Trigger", f"{NS}/image_monitor/stats")
    recorder_stats = node.create_client("std_srvs/srv/Trigger", f"{NS}/recorder/stats")
    everyone = (web, server, monitor, recorder)
    try:
        assert stats.wait_for_service(60.0), procs.output(server)
        assert monitor_stats.wait_for_service(30.0) and recorder_stats.wait_for_service(30.0), procs.output(recorder)
        assert wait_for(lambda: f"playground at http://127.0.0.1:{port}/" in procs.output(web), 30), procs.output(web)
        assert node.spin_until(lambda: images.matched_count() >= 4 and states.matched_count() >= 2, 30.0)
        time.sleep(0.5)  # the nodes' readers match our writers too
        with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=20) as ws:
            ws.send(json.dumps({"type": "init"}))
            assert json.loads(ws.recv(20))["type"] == "hello"
            for k, fields in enumerate(BAD.values()):
                bad = image(*fields, stamp=10 + k)
                images.publish(bad)
                states.publish(joint_state(bad.header))  # all of an observation but its frame: no query
            node.spin_until(lambda: False, 2.0)
            for proc in everyone:
                assert proc.poll() is None, procs.output(proc)

            # the next good frame: a PNG on the page, and an action chunk from the policy
            good = numpy_to_image(np.full((16, 16, 3), 200, np.uint8), node.header())
            images.publish(good)
            states.publish(joint_state(good.header))
            frame = None
            deadline = time.monotonic() + 20
            while frame is None and time.monotonic() < deadline:
                msg = ws.recv(20)
                frame = msg if isinstance(msg, bytes) else None
            assert frame is not None and frame[10:18] == b"\x89PNG\r\n\x1a\n"  # after t_client and camera
        assert node.spin_until(lambda: len(actions) == 1, 30.0), procs.output(server)
        report = json.loads(stats.call(new_message("std_srvs/srv/Trigger_Request"), timeout=10).message)
        assert report["refused"].get("image") == len(BAD) and report["queries"] == 1, report
        trigger = new_message("std_srvs/srv/Trigger_Request")
        report = json.loads(monitor_stats.call(trigger, timeout=10).message)
        assert (report["refused"], report["received"]) == (len(BAD), 1), report
        assert recorder_stats.call(trigger, timeout=10).success  # still answering
    finally:
        node.destroy()
    for proc in everyone:
        assert proc.poll() is None, procs.output(proc)
    for proc, line in ((web, "refused image"), (server, "refused camera frame"), (monitor, "refused frame"),
                       (recorder, "refused message")):  # fmt: skip
        log = procs.output(proc)
        warnings = [x for x in log.splitlines() if line in x]
        assert warnings and ("each side must be in" in warnings[0] or "expected 16x16" in warnings[0]), log
        assert len(warnings) < len(BAD), warnings  # throttled: a burst is not a line per frame
        assert "Traceback" not in log, log
