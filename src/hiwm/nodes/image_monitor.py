"""Watches an image topic: frame rate, latency, and frames refused for size or encoding.

Topics: ``image`` (sensor_msgs/Image, in), or with ``task`` set, that task's first camera topic
(``Camera.topic``), its size expected unless ``width`` / ``height`` are given. Services: ``~/stats``
(std_srvs/Trigger, JSON in ``message``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from hiwm.comm import InterfaceError, Node, new_message
from hiwm.comm.images import image_to_numpy
from hiwm.comm.qos import profile
from hiwm.comm.runner import run_node
from hiwm.tasks import get_task


@dataclass
class ImageMonitorConfig:
    task: str = ""  # a registered task: watch its first camera instead of ``image``
    width: int = 96
    height: int = 96
    qos: str = "sensor_data"
    report_period_s: float = 5.0


@dataclass
class ImageStats:
    """Counts and latencies of an image stream; plain Python, no middleware."""

    expect: tuple[int, int]
    received: int = 0
    refused: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    first: float | None = None
    last: float | None = None

    def add(self, msg: object, now_ns: int) -> None:
        image_to_numpy(msg, self.expect)  # raises InterfaceError on a bad frame
        stamp = msg.header.stamp
        self.latencies_ms.append((now_ns - (stamp.sec * 1_000_000_000 + stamp.nanosec)) / 1e6)
        del self.latencies_ms[:-1000]
        self.received += 1
        self.last = time.monotonic()
        self.first = self.first or self.last

    def summary(self) -> dict:
        span = (self.last - self.first) if self.first and self.last and self.received > 1 else 0.0
        lat = sorted(self.latencies_ms)
        return {
            "received": self.received,
            "refused": self.refused,
            "rate_hz": (self.received - 1) / span if span else 0.0,
            "latency_ms_p50": lat[len(lat) // 2] if lat else None,
        }


def wire(node: Node) -> ImageStats:
    cfg = node.load_config(ImageMonitorConfig)
    topic, expect = "image", (cfg.height, cfg.width)
    if cfg.task:
        camera = get_task(cfg.task).cameras[0]
        topic = camera.topic
        given = node.parameter_given
        expect = (cfg.height if given("height") else camera.height, cfg.width if given("width") else camera.width)
    stats = ImageStats(expect=expect)

    def on_image(msg: object) -> None:
        try:
            stats.add(msg, node.now_ns())
        except InterfaceError as exc:
            stats.refused += 1
            node.bad_input.warning("image", f"refused frame: {exc}")

    def report() -> None:
        node.logger.info(json.dumps(stats.summary()))

    def get_stats(_request: object) -> object:
        return new_message("std_srvs/srv/Trigger_Response", success=True, message=json.dumps(stats.summary()))

    node.create_subscription("sensor_msgs/msg/Image", topic, on_image, profile(cfg.qos))
    node.create_service("std_srvs/srv/Trigger", "~/stats", get_stats)
    node.create_timer(cfg.report_period_s, report)
    return stats


def main(argv: list[str] | None = None) -> int:
    return run_node("image_monitor", wire, argv)


if __name__ == "__main__":
    raise SystemExit(main())
