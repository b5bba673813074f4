"""DDS-backend nodes' parameter services and graph announcements, over real DDS, without ROS.

The same services and ``ros_discovery_info`` are checked with the real ``ros2`` CLI in
tests/test_ros2_graph.py; these run everywhere, from a second DDS-backend process.
"""

from __future__ import annotations

import pytest
from cyclonedds.sub import DataReader

from hiwm.comm import new_message
from hiwm.comm.dds.graph import discover
from hiwm.comm.dds.idl import idl_class
from hiwm.comm.dds.node import GRAPH_TOPIC, GRAPH_TYPE, DdsNode, _take_raw, dds_qos
from hiwm.comm.dds.parameters import DOUBLE, INTEGER, STRING_ARRAY, from_msg, parameter_type, to_msg
from hiwm.comm.interfaces import deserialize
from hiwm.comm.params import ParameterError
from hiwm.comm.qos import LATCHED


@pytest.fixture
def node():
    n = DdsNode("param_client")
    yield n
    n.destroy()


def call(node, srv: str, name: str, **fields):
    client = node.create_client(f"rcl_interfaces/srv/{srv}", name)
    return client.call(new_message(f"rcl_interfaces/srv/{srv}_Request", **fields), timeout=20)


def param(name: str, value):
    return new_message("rcl_interfaces/msg/Parameter", name=name, value=to_msg(value))


@pytest.mark.parametrize("value", [True, 3, 2.5, "x", [True, False], [1, 2], [1.5, 2], ["a", "b"], None])
def test_values_round_trip_through_parameter_value_messages(value):
    back = from_msg(to_msg(value))
    assert back == (None if value is None else value) and type(back) is type(value)


def test_parameter_types_follow_rclpy():
    assert parameter_type([1, 2.5]) == parameter_type([1.0]) != parameter_type([1])
    assert parameter_type(["a"]) == STRING_ARRAY
    with pytest.raises(ParameterError):
        parameter_type({"a": 1})


def test_parameter_services_answer_as_rclpy_does(node, procs):
    camera = procs.python("hiwm.nodes.pattern_camera", "--ros-args", "-p", "width:=64")
    names = call(node, "ListParameters", "/pattern_camera/list_parameters").result.names
    assert {"width", "height", "rate_hz", "frame_id", "qos", "use_sim_time"} <= set(names), procs.output(camera)

    values = call(node, "GetParameters", "/pattern_camera/get_parameters", names=["width", "rate_hz"]).values
    assert [from_msg(v) for v in values] == [64, 10.0]
    # rclpy answers nothing at all once one name is unknown.
    assert call(node, "GetParameters", "/pattern_camera/get_parameters", names=["width", "nope"]).values == []
    types = call(node, "GetParameterTypes", "/pattern_camera/get_parameter_types", names=["width", "rate_hz"]).types
    assert list(types) == [INTEGER, DOUBLE]
    (desc,) = call(node, "DescribeParameters", "/pattern_camera/describe_parameters", names=["width"]).descriptors
    assert (desc.name, desc.type, desc.read_only) == ("width", INTEGER, False)

    params = [param("rate_hz", 4), param("width", "wide"), param("nope", 1)]
    results = call(node, "SetParameters", "/pattern_camera/set_parameters", parameters=params).results
    assert [r.successful for r in results] == [True, False, False]
    assert "expected 'Type.INTEGER' got 'Type.STRING'" in results[1].reason
    assert "nope" in results[2].reason
    values = call(node, "GetParameters", "/pattern_camera/get_parameters", names=["rate_hz", "width"]).values
    assert [from_msg(v) for v in values] == [4.0, 64]  # an integer widens to the declared double

    # Atomically: one bad value and nothing changes.
    params = [param("height", 32), param("width", "wide")]
    result = call(node, "SetParametersAtomically", "/pattern_camera/set_parameters_atomically", parameters=params)
    assert not result.result.successful
    values = call(node, "GetParameters", "/pattern_camera/get_parameters", names=["height"]).values
    assert from_msg(values[0]) == 96
    assert camera.poll() is None, procs.output(camera)


@pytest.mark.probe("set a parameter to a value of another type", "refused with a reason; value and node unchanged")
def test_wrong_types_are_refused_in_process(node):
    node.declare_parameter("gains", [1.0, 2.0])
    node.declare_parameter("names", [])
    with pytest.raises(ParameterError, match="gains"):
        node.set_parameters({"gains": "high"})
    node.set_parameters({"names": ["a"]})  # declared empty: any list is taken
    node.declare_parameter("fixed", 3, read_only=True)
    with pytest.raises(ParameterError, match="read-only"):
        node.set_parameters({"fixed": 4})
    assert node.get_parameter("gains") == [1.0, 2.0] and node.get_parameter("names") == ["a"]


def test_the_participant_announces_its_nodes_and_their_endpoints(node, procs):
    infos: list = []
    proc = procs.python("hiwm.nodes.pattern_camera", "--ros-args", "-r", "__ns:=/cam")
    # ros_discovery_info is not under rt/: read it by its DDS name, as rmw does.
    reader = DataReader(
        node.process.participant, node.process.topic(GRAPH_TOPIC, idl_class(GRAPH_TYPE)), qos=dds_qos(LATCHED)
    )

    def camera_info():
        for data in _take_raw(reader):
            infos.append(deserialize(data, GRAPH_TYPE))
        for info in reversed(infos):
            if bytes(info.gid.data) != node.process.guid and any(
                n.node_name == "pattern_camera" for n in info.node_entities_info_seq
            ):
                return info
        return None

    def counts():
        info = camera_info()
        entry = info.node_entities_info_seq[0] if info else None
        return entry and (entry.node_namespace, len(entry.reader_gid_seq), len(entry.writer_gid_seq))

    # Announced again as endpoints appear. In the end: the image and parameter-event writers,
    # and one reader and one writer for each of the six parameter services and ~/enable.
    assert node.spin_until(lambda: counts() == ("/cam", 7, 9), 20), (counts(), procs.output(proc))
    assert len(camera_info().node_entities_info_seq) == 1
    # `hiwm topic/service list` shows ROS names only: not the graph topic, but the services.
    seen = discover(0.5)
    assert seen["/cam/pattern_camera/get_parameters"].kind == "service" and "/parameter_events" in seen
    assert not [name for name in seen if "discovery_info" in name]
    reader.__del__()
