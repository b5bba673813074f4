"""QoS profiles, named as in ROS 2 (``rclpy.qos``), mapped by each backend."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Reliability(Enum):
    RELIABLE = "reliable"
    BEST_EFFORT = "best_effort"


class Durability(Enum):
    VOLATILE = "volatile"
    TRANSIENT_LOCAL = "transient_local"


class History(Enum):
    KEEP_LAST = "keep_last"
    KEEP_ALL = "keep_all"


@dataclass(frozen=True)
class QoSProfile:
    """The subset of DDS QoS that ROS 2 exposes and hiwm uses."""

    reliability: Reliability = Reliability.RELIABLE
    durability: Durability = Durability.VOLATILE
    history: History = History.KEEP_LAST
    depth: int = 10

    def __post_init__(self) -> None:
        if self.history is History.KEEP_LAST and self.depth < 1:
            raise ValueError(f"KEEP_LAST needs depth >= 1, got {self.depth}")


#: ROS 2 default: reliable, volatile, keep last 10.
DEFAULT = QoSProfile()
#: ROS 2 sensor data: best effort, volatile, keep last 5.
SENSOR_DATA = QoSProfile(reliability=Reliability.BEST_EFFORT, depth=5)
#: Lossless streams (recording, lockstep images): reliable, keep all.
KEEP_ALL = QoSProfile(history=History.KEEP_ALL, depth=0)
#: Latched state (last value delivered to late joiners): reliable, transient local, keep last 1.
LATCHED = QoSProfile(durability=Durability.TRANSIENT_LOCAL, depth=1)
#: Services, as rmw_cyclonedds sets them: reliable, volatile, keep last 10.
SERVICES = QoSProfile()

PROFILES = {"default": DEFAULT, "sensor_data": SENSOR_DATA, "keep_all": KEEP_ALL, "latched": LATCHED}


def profile(qos: QoSProfile | str | int | None) -> QoSProfile:
    """Accept a profile, a profile name, a keep-last depth (as rclpy does), or None (default)."""
    if qos is None:
        return DEFAULT
    if isinstance(qos, QoSProfile):
        return qos
    if isinstance(qos, bool):
        raise TypeError("QoS must be a QoSProfile, a profile name or a depth")
    if isinstance(qos, int):
        return QoSProfile(depth=qos)
    try:
        return PROFILES[qos]
    except KeyError:
        raise ValueError(f"unknown QoS profile {qos!r}; known: {sorted(PROFILES)}") from None
