"""RealSense: frame conversion with synthetic frames shaped like pyrealsense2's, and the node's refusal
to run without a camera (this machine has none)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from hiwm.camera.realsense import (
    COLOR_INFO_TOPIC,
    COLOR_TOPIC,
    DEPTH_INFO_TOPIC,
    DEPTH_TOPIC,
    Intrinsics,
    depth_to_numpy,
    frame_messages,
)
from hiwm.comm import InterfaceError, create_node, deserialize, new_message, serialize
from hiwm.comm.images import image_to_numpy

INTR = Intrinsics(64, 48, 380.5, 381.25, 31.7, 23.9, "brown_conrady", (0.1, -0.2, 0.001, 0.002, 0.03))


def frames(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    color = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)  # np.asanyarray(color_frame.get_data())
    depth = rng.integers(0, 65535, (48, 64), dtype=np.uint16)  # np.asanyarray(depth_frame.get_data()), z16
    return color, depth


def roundtrip(msg, kind: str):
    """Through ROS 2 CDR and back, as a subscriber (ours or a ROS node) would get it."""
    return deserialize(serialize(msg, kind), kind)


def test_color_depth_and_camera_info_from_synthetic_frames():
    color, depth = frames()
    header = new_message("std_msgs/msg/Header", frame_id="camera_color_optical_frame")
    msgs = frame_messages(color, INTR, header, depth)
    assert set(msgs) == {COLOR_TOPIC, COLOR_INFO_TOPIC, DEPTH_TOPIC, DEPTH_INFO_TOPIC}
    assert COLOR_TOPIC == "camera/camera/color/image_raw"  # realsense-ros names under the root namespace
    assert DEPTH_TOPIC == "camera/camera/aligned_depth_to_color/image_raw"

    image = roundtrip(msgs[COLOR_TOPIC], "sensor_msgs/msg/Image")
    assert (image.encoding, image.height, image.width, image.step) == ("rgb8", 48, 64, 64 * 3)
    np.testing.assert_array_equal(image_to_numpy(image), color)

    dimg = roundtrip(msgs[DEPTH_TOPIC], "sensor_msgs/msg/Image")
    assert (dimg.encoding, dimg.is_bigendian, dimg.step, len(dimg.data)) == ("16UC1", 0, 128, 48 * 128)
    np.testing.assert_array_equal(depth_to_numpy(dimg), depth)
    assert int(dimg.data[0]) == int(depth[0, 0]) & 0xFF  # little-endian on the wire

    info = roundtrip(msgs[COLOR_INFO_TOPIC], "sensor_msgs/msg/CameraInfo")
    assert (info.width, info.height, info.distortion_model) == (64, 48, "plumb_bob")
    np.testing.assert_allclose(info.k, [380.5, 0, 31.7, 0, 381.25, 23.9, 0, 0, 1])
    np.testing.assert_allclose(info.p, [380.5, 0, 31.7, 0, 0, 381.25, 23.9, 0, 0, 0, 1, 0])
    np.testing.assert_allclose(info.d, INTR.coeffs)
    np.testing.assert_allclose(info.r, np.eye(3).reshape(-1))
    for msg in msgs.values():
        assert msg.header.frame_id == "camera_color_optical_frame"


def test_bgr_frames_are_published_as_rgb_and_depth_is_optional():
    color, _ = frames(1)
    msgs = frame_messages(color[:, :, ::-1].copy(), INTR, new_message("std_msgs/msg/Header"), None, "bgr8")
    assert set(msgs) == {COLOR_TOPIC, COLOR_INFO_TOPIC}
    np.testing.assert_array_equal(image_to_numpy(msgs[COLOR_TOPIC]), color)


def test_intrinsics_from_a_pyrealsense2_shaped_object():
    rs_intr = SimpleNamespace(
        width=640, height=480, fx=615.0, fy=615.5, ppx=320.1, ppy=240.2,
        model="distortion.inverse_brown_conrady", coeffs=[0.0, 0.0, 0.0, 0.0, 0.0],
    )  # fmt: skip
    intr = Intrinsics.from_rs(rs_intr)
    assert intr.model == "inverse_brown_conrady" and intr.width == 640 and intr.coeffs == (0.0,) * 5


def test_bad_frames_are_refused_clearly():
    color, depth = frames()
    header = new_message("std_msgs/msg/Header")
    with pytest.raises(InterfaceError, match="intrinsics"):
        frame_messages(color[:40], INTR, header)
    with pytest.raises(InterfaceError, match="uint8"):
        frame_messages(color.astype(np.float32), INTR, header)
    with pytest.raises(InterfaceError, match="aligned depth"):
        frame_messages(color, INTR, header, depth[:, :32])
    with pytest.raises(InterfaceError, match="uint16"):
        frame_messages(color, INTR, header, depth.astype(np.float32))
    with pytest.raises(InterfaceError, match="rgb8 or bgr8"):
        frame_messages(color, INTR, header, None, "yuyv")
    bad = new_message("sensor_msgs/msg/Image", height=2, width=2, encoding="16UC1", step=4, data=np.zeros(3, np.uint8))
    with pytest.raises(InterfaceError, match="do not match"):
        depth_to_numpy(bad)


def test_node_without_a_camera_exits_non_zero_with_a_clear_message(procs):
    proc = procs.python("hiwm.nodes.realsense_camera", "--ros-args", "-p", "fps:=15")
    assert proc.wait(60) != 0
    log = procs.output(proc)
    assert "no RealSense camera attached" in log or "pyrealsense2 cannot be loaded" in log, log
    assert "Traceback" not in log


def record_session(path: Path, color: np.ndarray, depth: np.ndarray, frames: int = 10) -> None:
    """A librealsense recording made the way RealSense Viewer makes one, from a software device."""
    rs = pytest.importorskip("pyrealsense2", reason="the realsense extra (pyrealsense2 + libusb) is not installed")
    h, w = depth.shape
    device = rs.software_device()
    sensors = {"color": device.add_sensor("Color"), "depth": device.add_sensor("Depth")}
    intr = rs.intrinsics()
    intr.width, intr.height, intr.fx, intr.fy, intr.ppx, intr.ppy = w, h, INTR.fx, INTR.fy, INTR.ppx, INTR.ppy
    intr.model, intr.coeffs = rs.distortion.brown_conrady, list(INTR.coeffs)
    profiles = {}
    for uid, (name, kind, fmt, bpp) in enumerate(
        [("color", rs.stream.color, rs.format.rgb8, 3), ("depth", rs.stream.depth, rs.format.z16, 2)]
    ):
        stream = rs.video_stream()
        stream.type, stream.index, stream.uid, stream.width, stream.height = kind, 0, uid, w, h
        stream.fps, stream.bpp, stream.fmt, stream.intrinsics = 30, bpp, fmt, intr
        profiles[name] = sensors[name].add_video_stream(stream)
    sensors["depth"].add_read_only_option(rs.option.depth_units, 0.001)
    identity = rs.extrinsics()
    identity.rotation, identity.translation = [1, 0, 0, 0, 1, 0, 0, 0, 1], [0, 0, 0]
    profiles["depth"].register_extrinsics_to(profiles["color"], identity)
    recorder = rs.recorder(str(path), device)
    queues = {name: rs.frame_queue(frames) for name in sensors}
    for name, sensor in sensors.items():
        sensor.open(profiles[name])
        sensor.start(queues[name])
    for i in range(frames):
        for name, pixels, bpp in (("color", color, 3), ("depth", depth, 2)):
            frame = rs.software_video_frame()
            frame.pixels, frame.stride, frame.bpp = pixels, w * bpp, bpp
            frame.timestamp, frame.domain, frame.frame_number = i * 33.3, rs.timestamp_domain.hardware_clock, i
            frame.profile = profiles[name].as_video_stream_profile()
            sensors[name].on_video_frame(frame)
        time.sleep(1 / 30)  # the recorder stamps frames on arrival; playback keeps that pace
    for sensor in sensors.values():
        sensor.stop()
        sensor.close()
    del recorder  # closes the file


def test_node_replays_a_librealsense_recording_on_realsense_ros_topics(procs, tmp_path):
    color, depth = frames(3)
    depth = np.full_like(depth, 700)
    depth[10:20, 10:30] = 950  # a box 25 cm closer
    path = tmp_path / "session.db3"
    record_session(path, color, depth)
    proc = procs.python(
        "hiwm.nodes.realsense_camera", "--ros-args", "-r", "__ns:=/lab", "-p", f"playback_file:={path}",
        "-p", "qos:=default",
    )  # fmt: skip
    node = create_node("realsense_test")
    got: dict[str, list] = {t: [] for t in (COLOR_TOPIC, COLOR_INFO_TOPIC, DEPTH_TOPIC, DEPTH_INFO_TOPIC)}
    for topic, items in got.items():
        kind = "sensor_msgs/msg/Image" if topic.endswith("image_raw") else "sensor_msgs/msg/CameraInfo"
        node.create_subscription(kind, f"/lab/{topic}", items.append)
    try:
        assert node.spin_until(lambda: all(len(v) >= 3 for v in got.values()), 30.0), procs.output(proc)
        np.testing.assert_array_equal(image_to_numpy(got[COLOR_TOPIC][-1], expect=(48, 64)), color)
        aligned = depth_to_numpy(got[DEPTH_TOPIC][-1])
        filled = aligned > 0  # librealsense's align leaves a few holes where reprojection rounds away
        assert aligned.shape == (48, 64) and filled.mean() > 0.9
        np.testing.assert_array_equal(aligned[filled], depth[filled])  # identical extrinsics: same depth per pixel
        assert np.all(aligned[12:18, 12:28][filled[12:18, 12:28]] == 950)
        info = got[COLOR_INFO_TOPIC][-1]
        np.testing.assert_allclose(info.k, [INTR.fx, 0, INTR.ppx, 0, INTR.fy, INTR.ppy, 0, 0, 1], rtol=1e-6)
        np.testing.assert_allclose(info.d, INTR.coeffs, atol=1e-6)
        assert got[DEPTH_INFO_TOPIC][-1].width == 64
        assert got[COLOR_TOPIC][-1].header.frame_id == "camera_color_optical_frame"
        assert proc.poll() is None
    finally:
        node.destroy()


def test_camera_name_renames_the_topics_as_realsense_ros_does():
    from hiwm.camera.realsense import COLOR_TOPIC, DEPTH_INFO_TOPIC, named_topic
    from hiwm.nodes.realsense_camera import RealSenseConfig
    from hiwm.tasks import get_task

    assert named_topic(COLOR_TOPIC, "camera") == COLOR_TOPIC
    assert named_topic(COLOR_TOPIC, "front") == get_task("so101_pick").cameras[0].topic
    assert named_topic(DEPTH_INFO_TOPIC, "wrist_1") == "camera/wrist_1/aligned_depth_to_color/camera_info"
    for bad in ("", "a/b", "../x", "a b"):
        with pytest.raises(ValueError, match="camera_name"):
            RealSenseConfig(camera_name=bad)
