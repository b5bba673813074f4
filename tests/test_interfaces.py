"""Interfaces: hiwm_msgs parsed from msgs/, standard types, CDR, names, QoS."""

from __future__ import annotations

import numpy as np
import pytest

from hiwm.comm import names
from hiwm.comm.dds.idl import dds_type_name, idl_class, service_idl_class
from hiwm.comm.images import image_to_numpy, numpy_to_image
from hiwm.comm.interfaces import InterfaceError, deserialize, new_message, serialize, service_types, typestore
from hiwm.comm.qos import KEEP_ALL, SENSOR_DATA, History, Reliability, profile
from hiwm.paths import share_path


def test_every_msgs_file_is_registered():
    store = typestore()
    for path in share_path("msgs", "msg").glob("*.msg"):
        assert f"hiwm_msgs/msg/{path.stem}" in store.types
    for path in share_path("msgs", "srv").glob("*.srv"):
        assert service_types(f"hiwm_msgs/srv/{path.stem}")


def test_constants_and_defaults():
    chunk = new_message("hiwm_msgs/msg/ActionChunk", horizon=2, action_dim=2, data=np.ones(4, np.float32))
    assert chunk.SOURCE_HUMAN == 1
    assert chunk.header.frame_id == "" and chunk.source == 0
    with pytest.raises(InterfaceError, match="no field"):
        new_message("hiwm_msgs/msg/ActionChunk", horizn=2)
    with pytest.raises(InterfaceError, match="unknown message type"):
        new_message("hiwm_msgs/msg/Nope")


def test_cyclone_serializer_matches_rosbags_byte_for_byte():
    """Two independent CDR implementations agree: the .msg -> IDL mapping is exact."""
    msg = new_message(
        "sensor_msgs/msg/JointState",
        name=["x", "y"],
        position=np.array([1.5, -2.0]),
        velocity=np.array([0.25, 0.0]),
        effort=np.zeros(0),
    )
    cls = idl_class("sensor_msgs/msg/JointState")
    twin = cls.deserialize(serialize(msg))
    assert list(twin.name) == ["x", "y"] and list(twin.position) == [1.5, -2.0]
    assert twin.serialize(use_version_2=False) == serialize(msg)


def test_dds_names_follow_rmw_cyclonedds():
    assert dds_type_name("sensor_msgs/msg/Image") == "sensor_msgs::msg::dds_::Image_"
    assert dds_type_name("hiwm_msgs/srv/Reset_Request") == "hiwm_msgs::srv::dds_::Reset_Request_"
    assert service_idl_class("hiwm_msgs/srv/Reset_Request").__idl_typename__ == "hiwm_msgs::srv::dds_::Reset_Request_"
    assert names.dds_topic(names.resolve("image", "cam", "/robot")) == "rt/robot/image"
    assert names.dds_request_topic(names.resolve("~/reset", "cam", "/")) == "rq/cam/resetRequest"
    assert names.ros_name_of_dds_topic("rr/cam/resetReply") == ("service", "/cam/reset")
    with pytest.raises(names.InvalidName):
        names.resolve("bad name", "cam", "/")


@pytest.mark.parametrize("cut", [0, 3, 10, 30])
def test_truncated_payloads_raise_interface_error(cut):
    data = serialize(new_message("sensor_msgs/msg/CameraInfo", distortion_model="plumb_bob"))
    with pytest.raises(InterfaceError, match="CameraInfo"):
        deserialize(data[:cut], "sensor_msgs/msg/CameraInfo")


def test_image_helpers_check_sizes():
    frame = np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    msg = numpy_to_image(frame)
    assert np.array_equal(image_to_numpy(deserialize(serialize(msg), "sensor_msgs/msg/Image")), frame)
    with pytest.raises(InterfaceError, match="expected 128x128"):
        image_to_numpy(msg, expect=(128, 128))
    msg.encoding = "32FC1"
    with pytest.raises(InterfaceError, match="unsupported image encoding"):
        image_to_numpy(msg)
    short = numpy_to_image(frame)
    short.data = short.data[:-5]
    with pytest.raises(InterfaceError, match="do not match"):
        image_to_numpy(short)


def test_qos_profiles():
    assert SENSOR_DATA.reliability is Reliability.BEST_EFFORT and SENSOR_DATA.depth == 5
    assert KEEP_ALL.history is History.KEEP_ALL
    assert profile("keep_all") is KEEP_ALL and profile(3).depth == 3
    with pytest.raises(ValueError, match="unknown QoS"):
        profile("fast")
