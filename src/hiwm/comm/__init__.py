"""hiwm's messaging API: one node interface, two real backends.

``create_node`` returns an rclpy-backed node when rclpy is importable (a ROS 2
machine) and a Cyclone DDS node otherwise; ``HIWM_BACKEND=rclpy|dds`` forces one.
"""

from __future__ import annotations

import importlib.util
import os

from hiwm.comm.interfaces import InterfaceError, deserialize, message_class, new_message, serialize, to_dict
from hiwm.comm.node import Node, RosArgs, ServiceCallError, Timer, parse_ros_args
from hiwm.comm.params import ParameterError
from hiwm.comm.qos import DEFAULT, KEEP_ALL, LATCHED, SENSOR_DATA, QoSProfile

__all__ = [
    "DEFAULT",
    "KEEP_ALL",
    "LATCHED",
    "SENSOR_DATA",
    "InterfaceError",
    "Node",
    "ParameterError",
    "QoSProfile",
    "RosArgs",
    "ServiceCallError",
    "Timer",
    "backend_name",
    "create_node",
    "deserialize",
    "message_class",
    "new_message",
    "parse_ros_args",
    "serialize",
    "to_dict",
]

BACKENDS = ("rclpy", "dds")


def backend_name() -> str:
    """The backend this process uses: ``HIWM_BACKEND`` if set, else rclpy when importable."""
    forced = os.environ.get("HIWM_BACKEND", "").strip().lower()
    if forced:
        if forced not in BACKENDS:
            raise ValueError(f"HIWM_BACKEND must be one of {BACKENDS}, got {forced!r}")
        return forced
    return "rclpy" if importlib.util.find_spec("rclpy") is not None else "dds"


def create_node(name: str, namespace: str = "/", ros_args: RosArgs | None = None) -> Node:
    """A node on this process's backend (see :func:`backend_name`)."""
    if backend_name() == "rclpy":
        from hiwm.comm.ros import RclpyNode

        return RclpyNode(name, namespace, ros_args)
    from hiwm.comm.dds.node import DdsNode

    return DdsNode(name, namespace, ros_args)
