"""Test peer on plain rclpy (no hiwm code): counts ``/image`` frames, reports on ``/chatter``."""

from __future__ import annotations

import contextlib

import rclpy
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import String


def main() -> None:
    rclpy.init()
    node = Node("rclpy_peer")
    frames = [0]

    def on_image(msg: Image) -> None:
        frames[0] += 1

    node.create_subscription(Image, "/image", on_image, qos_profile_sensor_data)
    pub = node.create_publisher(String, "/chatter", 10)
    node.create_timer(0.2, lambda: pub.publish(String(data=f"frames {frames[0]}")))
    with contextlib.suppress(KeyboardInterrupt):
        rclpy.spin(node)


if __name__ == "__main__":
    main()
