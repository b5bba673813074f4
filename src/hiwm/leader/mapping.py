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

``task: <name>`` (e.g. ``so101_pick``; else the task the map is built for, the default task unless
named) gives ``low`` and ``high`` unless the section does (that task's action limits) and lets a joint_map
entry name its action dimension (``action: shoulder_pan``) instead of its index: joint to joint, the
leader's calibrated radians clipped to the task's joint limits, with no kinematics in between.

Without a section, the task's own leader-arm map (:attr:`hiwm.tasks.base.Task.leader_arm`, the default
task unless one is named) drives its action space within its limits: each of the map's joints is the
calibrated joint of that name, or, when the calibration names none of them, the calibrated joint in the
same place (a calibration recorded with ``joint<id>`` names drives the map's joints in servo order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hiwm.leader.calibration import Calibration, CalibrationError
from hiwm.robot.kinematics import Chain, chain_from_dicts
from hiwm.tasks import DEFAULT_TASK, get_task

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


def default_section(cal: Calibration, task: str = DEFAULT_TASK) -> dict[str, Any]:
    """The ``action`` section of the task's leader-arm map for this calibration (module docstring)."""
    spec = get_task(task)
    leader = spec.leader_arm
    if leader is None:
        raise CalibrationError(f"task {spec.name!r} has no leader-arm map; give the calibration an 'action' section")
    wanted = [j.joint for j in leader.joints]
    named = [j for j in wanted if j in cal.names]
    if named and len(named) < len(wanted):
        missing = [j for j in wanted if j not in cal.names]
        raise CalibrationError(
            f"task {spec.name!r}'s leader map needs joints {missing}; the calibration has {cal.names}"
        )
    if not named and len(cal.names) < len(wanted):
        raise CalibrationError(
            f"task {spec.name!r}'s leader map drives {len(wanted)} joints; the calibration has {len(cal.names)}: "
            "give it an 'action' section"
        )
    joints = wanted if named else cal.names[: len(wanted)]
    return {
        "task": spec.name,
        "joint_map": [
            {"joint": joint, "action": j.action, "scale": j.scale, "offset": j.offset}
            for joint, j in zip(joints, leader.joints, strict=True)
        ],
    }


def build_action_map(cal: Calibration, task: str = DEFAULT_TASK) -> ActionMap:
    """The calibration's action map: its ``action`` section, else ``task``'s leader-arm map."""
    section = cal.action or default_section(cal, task)
    try:
        space = get_task(str(section.get("task", task))).action
        names = space.names
        low = np.asarray(section.get("low", space.low), float)
        high = np.asarray(section.get("high", space.high), float)
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
                            f" ({list(names)})"
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
