"""``hiwm leader``: calibrate a leader arm from its bus, or emulate a servo bus on a pseudo-terminal."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from hiwm.tasks import DEFAULT_TASK, task_names

    leader = sub.add_parser("leader", help="leader arms: calibrate from the bus, emulate a servo bus")
    lsub = leader.add_subparsers(dest="leader_command", required=True, metavar="SUBCOMMAND")

    p = lsub.add_parser("calibrate", help="record homing (zero pose) and joint ranges into a calibration YAML")
    p.add_argument("--protocol", default="feetech", help="dynamixel | feetech | feetech_scs")
    p.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyACM0")
    p.add_argument("--baudrate", type=int, default=1_000_000)
    p.add_argument("--ids", required=True, help="comma-separated servo ids")
    p.add_argument("--names", default="", help="comma-separated joint names (default joint<id>)")
    p.add_argument("--directions", default="", help="comma-separated 1/-1 per joint (default all 1)")
    p.add_argument("--seconds", type=float, default=15.0, help="time to sweep every joint through its range")
    p.add_argument("--out", required=True, help="calibration YAML to write")
    p.add_argument("--task", choices=task_names(), default=DEFAULT_TASK,
                   help="the task whose leader-arm map the file gets (its action section)")  # fmt: skip
    p.set_defaults(func=_calibrate)

    p = lsub.add_parser("emulate", help="a servo bus on a pseudo-terminal (see python -m hiwm.leader.emulator -h)")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=_emulate)


def _calibrate(args: argparse.Namespace) -> int:
    from hiwm.leader.calibrate import run

    return run(args)


def _emulate(args: argparse.Namespace) -> int:
    from hiwm.leader.emulator import main

    return main(args.rest)
