"""RealSense camera node: color, optional aligned depth and camera info, on realsense-ros's topic names.

Topics (relative, so ``__ns`` and remaps apply; under ``/`` they are realsense-ros's defaults; ``camera_name``
replaces the second ``camera`` as realsense-ros's parameter of that name does, e.g. ``front`` for a task
whose camera topic is ``camera/front/color/image_raw``):
  out ``camera/camera/color/image_raw``                    sensor_msgs/Image rgb8
  out ``camera/camera/color/camera_info``                  sensor_msgs/CameraInfo
  out ``camera/camera/aligned_depth_to_color/image_raw``   sensor_msgs/Image 16UC1 (mm), if ``depth``
  out ``camera/camera/aligned_depth_to_color/camera_info`` sensor_msgs/CameraInfo, if ``depth``
Without pyrealsense2 or without a camera it logs why and exits with code 2. ``playback_file`` replays a
librealsense recording through the same pipeline instead of a live camera.
"""

from __future__ import annotations

from dataclasses import dataclass

from hiwm.camera.realsense import (
    COLOR_TOPIC,
    DEPTH_INFO_TOPIC,
    DEPTH_TOPIC,
    TOPICS,
    RealSense,
    frame_messages,
    named_topic,
)
from hiwm.comm import Node
from hiwm.comm.qos import profile
from hiwm.comm.runner import run_node


@dataclass
class RealSenseConfig:
    serial_no: str = ""  # empty: the first camera found
    width: int = 640
    height: int = 480
    fps: int = 30
    depth: bool = True  # aligned depth (16UC1)
    playback_file: str = ""  # play a librealsense recording (.db3/.bag) instead of opening a camera
    repeat: bool = True  # loop the recording
    frame_id: str = "camera_color_optical_frame"  # realsense-ros's optical frame name
    qos: str = "sensor_data"
    camera_name: str = "camera"  # realsense-ros's camera_name: topics camera/<camera_name>/...

    def __post_init__(self) -> None:
        named_topic(COLOR_TOPIC, self.camera_name)  # ValueError for a bad name
        if self.width < 1 or self.height < 1 or self.fps < 1:
            raise ValueError(f"width, height and fps must be positive, got {self.width}x{self.height}@{self.fps}")


class RealSenseNode:
    def __init__(self, node: Node, cfg: RealSenseConfig) -> None:
        self.node, self.cfg = node, cfg
        self.camera = cam = RealSense(
            cfg.serial_no, cfg.width, cfg.height, cfg.fps, cfg.depth, cfg.playback_file, cfg.repeat
        )
        source = f"playing {cfg.playback_file}" if cfg.playback_file else "streaming"
        node.logger.info(
            f"RealSense {source}: {cam.intrinsics.width}x{cam.intrinsics.height}, depth={cam.depth_enabled}"
        )
        qos = profile(cfg.qos)
        self.pubs = {
            topic: node.create_publisher(kind, named_topic(topic, cfg.camera_name), qos)
            for topic, kind in TOPICS.items()
            if cam.depth_enabled or topic not in (DEPTH_TOPIC, DEPTH_INFO_TOPIC)
        }
        node.create_timer(0.5 / cfg.fps, self.tick)  # poll twice per frame period

    def tick(self) -> None:
        frames = self.camera.poll()
        if frames is None:
            return
        color, depth = frames
        header = self.node.header(self.cfg.frame_id)
        msgs = frame_messages(color, self.camera.intrinsics, header, depth, self.camera.color_format)
        for topic, msg in msgs.items():
            self.pubs[topic].publish(msg)


def wire(node: Node) -> RealSenseNode:
    return RealSenseNode(node, node.load_config(RealSenseConfig))


def main(argv: list[str] | None = None) -> int:
    return run_node("realsense_camera", wire, argv)


if __name__ == "__main__":
    raise SystemExit(main())
