"""Leader-arm calibration: a YAML file of servos (id, homing offset, direction, range) and an action map.

Example (``config/leader_arm.yaml`` ships one)::

    protocol: feetech            # dynamixel | feetech | feetech_scs
    port: /dev/ttyACM0
    baudrate: 1000000
    joints:
      - {name: shoulder_pan, id: 1, homing: 2048, direction: 1, range: [1024, 3072]}
    action: {...}                # see hiwm.leader.mapping
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hiwm.files import atomic_write_text
from hiwm.leader.protocol import PROTOCOLS


class CalibrationError(ValueError):
    """A calibration file that cannot be used, with the file and field named."""


@dataclass(frozen=True)
class JointCalibration:
    name: str
    id: int
    homing: int  # raw ticks at joint angle zero
    direction: int = 1  # +1 or -1: which way the servo turns for a positive joint angle
    range: tuple[int, int] = (0, 4095)  # raw ticks the joint can reach (readings are clamped into it)
    ticks_per_rev: int = 4096

    def __post_init__(self) -> None:
        if not 0 <= self.id <= 252:
            raise ValueError(f"joint {self.name!r}: servo id must be in 0..252, got {self.id}")
        if self.direction not in (1, -1):
            raise ValueError(f"joint {self.name!r}: direction must be 1 or -1, got {self.direction}")
        if self.range[0] >= self.range[1]:
            raise ValueError(f"joint {self.name!r}: range {list(self.range)} must be [low, high] with low < high")
        if self.ticks_per_rev <= 0:
            raise ValueError(f"joint {self.name!r}: ticks_per_rev must be > 0")

    def to_radians(self, raw: int) -> float:
        clamped = min(max(raw, self.range[0]), self.range[1])
        return self.direction * (clamped - self.homing) * 2.0 * math.pi / self.ticks_per_rev

    def to_raw(self, angle: float) -> int:
        return round(self.homing + self.direction * angle * self.ticks_per_rev / (2.0 * math.pi))


@dataclass(frozen=True)
class Calibration:
    protocol: str
    joints: tuple[JointCalibration, ...]
    port: str = ""
    baudrate: int = 1_000_000
    action: dict[str, Any] = field(default_factory=dict)  # raw action-map section, parsed by mapping.py

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if not self.joints:
            raise ValueError("at least one joint is needed")
        for key, values in (("name", [j.name for j in self.joints]), ("id", [j.id for j in self.joints])):
            if len(set(values)) != len(values):
                raise ValueError(f"joint {key}s must be unique, got {values}")

    @property
    def names(self) -> list[str]:
        return [j.name for j in self.joints]

    @property
    def ids(self) -> list[int]:
        return [j.id for j in self.joints]

    def to_radians(self, raw_by_id: dict[int, int]) -> np.ndarray:
        return np.array([j.to_radians(raw_by_id[j.id]) for j in self.joints], dtype=np.float64)


def _joint(i: int, spec: Any) -> JointCalibration:
    if not isinstance(spec, dict):
        raise ValueError(f"joints[{i}] must be a mapping")
    missing = {"name", "id", "homing"} - set(spec)
    if missing:
        raise ValueError(f"joints[{i}] lacks {sorted(missing)}")
    unknown = set(spec) - {"name", "id", "homing", "direction", "range", "ticks_per_rev"}
    if unknown:
        raise ValueError(f"joints[{i}] has unknown keys {sorted(unknown)}")
    rng = spec.get("range", [0, 4095])
    if not isinstance(rng, list | tuple) or len(rng) != 2:
        raise ValueError(f"joints[{i}].range must be [low, high]")
    return JointCalibration(
        name=str(spec["name"]),
        id=int(spec["id"]),
        homing=int(spec["homing"]),
        direction=int(spec.get("direction", 1)),
        range=(int(rng[0]), int(rng[1])),
        ticks_per_rev=int(spec.get("ticks_per_rev", 4096)),
    )


def parse_calibration(doc: Any, origin: str = "<calibration>") -> Calibration:
    try:
        if not isinstance(doc, dict):
            raise ValueError("the top level must be a mapping")
        unknown = set(doc) - {"protocol", "port", "baudrate", "joints", "action"}
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        joints = doc.get("joints")
        if not isinstance(joints, list):
            raise ValueError("'joints' must be a list")
        return Calibration(
            protocol=str(doc.get("protocol", "")),
            joints=tuple(_joint(i, spec) for i, spec in enumerate(joints)),
            port=str(doc.get("port", "")),
            baudrate=int(doc.get("baudrate", 1_000_000)),
            action=dict(doc.get("action") or {}),
        )
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"{origin}: {exc}") from exc


def load_calibration(path: str | Path) -> Calibration:
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise CalibrationError(f"cannot read calibration file {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise CalibrationError(f"{path}: not valid YAML: {exc}") from exc
    return parse_calibration(doc, str(path))


def save_calibration(cal: Calibration, path: str | Path) -> None:
    doc = {
        "protocol": cal.protocol,
        "port": cal.port,
        "baudrate": cal.baudrate,
        "joints": [
            {"name": j.name, "id": j.id, "homing": j.homing, "direction": j.direction, "range": list(j.range)}
            | ({"ticks_per_rev": j.ticks_per_rev} if j.ticks_per_rev != 4096 else {})
            for j in cal.joints
        ],
    }
    if cal.action:
        doc["action"] = cal.action
    atomic_write_text(path, yaml.safe_dump(doc, sort_keys=False))
