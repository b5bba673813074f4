"""A camera that needs no hardware: a moving test pattern on a sensor_msgs/Image topic.

Topics: ``image`` (sensor_msgs/Image, out). Services: ``~/enable`` (std_srvs/SetBool).
It exercises the image path of a graph (sizes, rates, recorders) anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hiwm.comm import Node, new_message
from hiwm.comm.images import numpy_to_image
from hiwm.comm.qos import profile
from hiwm.comm.runner import run_node


@dataclass
class PatternCameraConfig:
    width: int = 96
    height: int = 96
    rate_hz: float = 10.0
    qos: str = "sensor_data"
    frame_id: str = "camera"

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")
        if not self.rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {self.rate_hz}")


class TestPattern:
    """Diagonal colour bands that shift one pixel per frame, with the frame number encoded in row 0."""

    def __init__(self, height: int, width: int) -> None:
        yy, xx = np.mgrid[0:height, 0:width]
        self._base = (xx + yy).astype(np.int64)
        self.frame = 0

    def next(self) -> np.ndarray:
        phase = (self._base + self.frame) % 256
        image = np.stack([phase, (phase * 3) % 256, 255 - phase], axis=-1).astype(np.uint8)
        image[0, :4, 0] = np.frombuffer(np.uint32(self.frame).tobytes(), np.uint8)
        self.frame += 1
        return image


def wire(node: Node) -> TestPattern:
    cfg = node.load_config(PatternCameraConfig)
    pattern = TestPattern(cfg.height, cfg.width)
    pub = node.create_publisher("sensor_msgs/msg/Image", "image", profile(cfg.qos))
    enabled = [True]

    def tick() -> None:
        if enabled[0]:
            pub.publish(numpy_to_image(pattern.next(), node.header(cfg.frame_id)))

    def enable(request: object) -> object:
        enabled[0] = bool(request.data)
        return new_message("std_srvs/srv/SetBool_Response", success=True, message="on" if enabled[0] else "off")

    node.create_timer(1.0 / cfg.rate_hz, tick)
    node.create_service("std_srvs/srv/SetBool", "~/enable", enable)
    return pattern


def main(argv: list[str] | None = None) -> int:
    return run_node("pattern_camera", wire, argv)


if __name__ == "__main__":
    raise SystemExit(main())
