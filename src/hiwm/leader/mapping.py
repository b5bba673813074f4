"""From leader joint angles to a task's action: a joint map (axis = offset + scale * angle) or forward
kinematics through a chain (axis = offset + scale * tip coordinate), clipped to the action box.

The calibration file's ``action`` section::

    action:
      low: [0, 0]
      high: [512, 512]
      joint_map:                 # either this ...
        - {joint: shoulder_pan, axis: 0, scale: 326.0, offset: 256.0}
      kinematics:                # ... or this
        chain: [{name: shoulder_pan, axis: [0, 0, 1]}, {name: elbow, origin_xyz: [0.1, 0, 0]}]
        tip_xyz: [0.1, 0, 0]
        axes: [x, y]             # tip coordinates, one per action axis
        scale: [1280, 1280]
        offset: [0, 256]

``task: <name>`` (e.g. ``so101_pick``) takes ``low`` and ``high`` from that task's action space and lets a
joint_map entry name its action dimension (``action: shoulder_pan``) instead of its index: joint to joint,
the leader's calibrated radians clipped to the task's joint limits, with no kinematics in between.

Without a section, the first two joints drive Push-T's x and y: +-45 degrees span [0, 512].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from hiwm.leader.calibration import Calibration, CalibrationError
from hiwm.robot.kinematics import Chain, chain_from_dicts
from hiwm.tasks import get_task

PUSHT_LOW, PUSHT_HIGH = (0.0, 0.0), (512.0, 512.0)
COORDS = {"x": 0, "y": 1, "z": 2}


@dataclass(frozen=True)
class MapEntry:
    index: int  # joint index (joint map) or tip coordinate (kinematics)
    axis: int
    scale: float
    offset: float


@dataclass
class ActionMap:
    """``__call__(angles) -> action`` for one calibrated arm."""

    entries: list[MapEntry]
    low: np.ndarray
    high: np.ndarray
    chain: Chain | None = None

    @property
    def dim(self) -> int:
        return len(self.low)

    def __call__(self, angles: np.ndarray) -> np.ndarray:
        source = self.chain.position(angles) if self.chain is not None else np.asarray(angles, float)
        action = (self.low + self.high) / 2.0
        for e in self.entries:
            action[e.axis] = e.offset + e.scale * source[e.index]
        return np.clip(action, self.low, self.high)


def default_section(cal: Calibration) -> dict[str, Any]:
    if len(cal.joints) < 2:
        raise CalibrationError("the default action map needs two joints; give an 'action' section")
    scale = 256.0 / (math.pi / 4)
    return {
        "low": list(PUSHT_LOW),
        "high": list(PUSHT_HIGH),
        "joint_map": [{"joint": cal.names[i], "axis": i, "scale": scale, "offset": 256.0} for i in range(2)],
    }


def build_action_map(cal: Calibration) -> ActionMap:
    section = cal.action or default_section(cal)
    try:
        names: tuple[str, ...] = ()
        default_low, default_high = PUSHT_LOW, PUSHT_HIGH
        if "task" in section:
            space = get_task(str(section["task"])).action
            names, default_low, default_high = space.names, space.low, space.high
        low = np.asarray(section.get("low", default_low), float)
        high = np.asarray(section.get("high", default_high), float)
        if low.shape != high.shape or low.ndim != 1 or not np.all(low < high):
            raise ValueError(f"action low {low.tolist()} and high {high.tolist()} must be same-length, low < high")
        has_map, has_fk = "joint_map" in section, "kinematics" in section
        if has_map == has_fk:
            raise ValueError("give exactly one of 'joint_map' or 'kinematics'")
        if has_map:
            entries = []
            for i, spec in enumerate(section["joint_map"]):
                if spec["joint"] not in cal.names:
                    raise ValueError(f"joint_map[{i}]: unknown joint {spec['joint']!r}; joints are {cal.names}")
                if "action" in spec:
                    if spec["action"] not in names:
                        raise ValueError(
                            f"joint_map[{i}]: action {spec['action']!r} is not an action of the section's task"
                            f" ({list(names) or 'no task given'})"
                        )
                    axis = names.index(spec["action"])
                else:
                    axis = int(spec["axis"])
                entries.append(
                    MapEntry(
                        cal.names.index(spec["joint"]),
                        axis,
                        float(spec.get("scale", 1.0)),
                        float(spec.get("offset", 0.0)),
                    )
                )
            chain = None
        else:
            fk = section["kinematics"]
            chain = chain_from_dicts(fk["chain"], fk.get("tip_xyz", (0, 0, 0)))
            if chain.names != cal.names:
                raise ValueError(f"kinematics chain joints {chain.names} must be the calibrated joints {cal.names}")
            axes = list(fk.get("axes", ["x", "y"]))
            scale = list(fk.get("scale", [1.0] * len(axes)))
            offset = list(fk.get("offset", [0.0] * len(axes)))
            if not len(axes) == len(scale) == len(offset):
                raise ValueError("kinematics axes, scale and offset must have one entry per action axis")
            entries = [
                MapEntry(COORDS[a], i, float(s), float(o))
                for i, (a, s, o) in enumerate(zip(axes, scale, offset, strict=True))
            ]
        for e in entries:
            if not 0 <= e.axis < len(low):
                raise ValueError(f"action axis {e.axis} outside the {len(low)}-d action space")
        return ActionMap(entries, low, high, chain)
    except (KeyError, TypeError, ValueError) as exc:
        raise CalibrationError(f"action map: {type(exc).__name__}: {exc}") from exc
