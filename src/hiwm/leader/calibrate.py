"""Record a leader arm's calibration from the live bus: homing in the zero pose, then each joint's range.

The operator holds the arm in its zero pose (homing = median of the first reads), then moves every joint
through its full range for ``seconds`` (range = the extremes seen). The result is a calibration YAML
with the task's leader-arm map (``--task``, the default task unless given), ready for the ``leader_arm`` node.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from tqdm import tqdm

from hiwm.leader.bus import BusError, ServoBus
from hiwm.leader.calibration import Calibration, CalibrationError, JointCalibration, save_calibration
from hiwm.leader.mapping import default_section
from hiwm.leader.protocol import make_protocol
from hiwm.tasks import DEFAULT_TASK


def record(
    bus: ServoBus,
    ids: list[int],
    seconds: float,
    on_homing: Callable[[dict[int, int]], None] | None = None,
    homing_reads: int = 5,
) -> tuple[dict[int, int], dict[int, tuple[int, int]]]:
    """(homing, range) by servo id. Bus errors during the sweep are skipped; none at all is an error."""
    first: list[dict[int, int]] = []
    deadline = time.monotonic() + 5.0
    while len(first) < homing_reads:
        try:
            first.append(bus.read_positions(ids))
        except BusError as exc:
            if time.monotonic() > deadline:
                raise BusError(f"cannot record homing: {exc}") from exc
    homing = {i: int(np.median([r[i] for r in first])) for i in ids}
    if on_homing:
        on_homing(homing)
    low, high = dict(homing), dict(homing)
    end = time.monotonic() + seconds
    with tqdm(total=round(seconds, 1), unit="s", desc="move every joint through its range") as bar:
        while (now := time.monotonic()) < end:
            try:
                pos = bus.read_positions(ids)
            except BusError:
                continue  # a corrupt or lost reply: the next read counts
            for i, v in pos.items():
                low[i], high[i] = min(low[i], v), max(high[i], v)
            bar.n = round(seconds - (end - now), 1)
            bar.refresh()
    return homing, {i: (low[i], high[i]) for i in ids}


def build(
    protocol: str,
    port: str,
    baudrate: int,
    ids: list[int],
    names: list[str],
    directions: list[int],
    homing: dict[int, int],
    ranges: dict[int, tuple[int, int]],
    task: str = DEFAULT_TASK,
) -> Calibration:
    joints = []
    for i, name, direction in zip(ids, names, directions, strict=True):
        lo, hi = ranges[i]
        if lo >= hi:
            hi = lo + 1  # a joint that never moved: a one-tick range, so the file stays valid (and it shows)
        joints.append(JointCalibration(name, i, homing[i], direction, (lo, hi)))
    cal = Calibration(protocol, tuple(joints), port, baudrate)
    try:
        return Calibration(protocol, tuple(joints), port, baudrate, default_section(cal, task))
    except CalibrationError:
        return cal  # too few joints for the task's map: the file says so by having no action section


def run(args) -> int:
    ids = [int(x) for x in args.ids.split(",")]
    names = args.names.split(",") if args.names else [f"joint{i}" for i in ids]
    directions = [int(x) for x in args.directions.split(",")] if args.directions else [1] * len(ids)
    if not len(ids) == len(names) == len(directions):
        print("error: --ids, --names and --directions need the same number of entries")
        return 2
    bus = ServoBus(args.port, make_protocol(args.protocol), args.baudrate, timeout_s=0.05)
    try:
        bus.open()
        print("hold the arm in its zero pose...", flush=True)
        homing, ranges = record(bus, ids, args.seconds, lambda h: print(f"homing recorded: {h}", flush=True))
    except BusError as exc:
        print(f"error: {exc}")
        return 1
    finally:
        bus.close()
    cal = build(args.protocol, args.port, args.baudrate, ids, names, directions, homing, ranges, args.task)
    save_calibration(cal, args.out)
    still = [j.name for j in cal.joints if j.range[1] - j.range[0] <= 1]
    print(f"wrote {args.out}" + (f"; these joints never moved: {still}" if still else ""), flush=True)
    return 0
