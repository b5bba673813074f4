"""Entry-point glue: parse ``--ros-args``, build a node, wire its core, spin, exit cleanly."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

from hiwm.comm import create_node
from hiwm.comm.interfaces import InterfaceError
from hiwm.comm.node import Node, parse_ros_args
from hiwm.comm.params import ParameterError

EXIT_CONFIG_ERROR = 2


def run_node(name: str, wire: Callable[[Node], object], argv: list[str] | None = None) -> int:
    """Run one node until Ctrl-C or SIGTERM. ``wire(node)`` creates its topics and state.

    Configuration errors (bad parameter files, unknown types) end the process with
    exit code 2 and one clear line; anything raised later inside callbacks is the
    node's to log.
    """
    argv = sys.argv[1:] if argv is None else argv
    try:
        ros_args, _ = parse_ros_args(argv)
        node = create_node(name, ros_args=ros_args)
    except (ParameterError, InterfaceError, ValueError) as exc:
        print(f"[ERROR] [{name}]: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    signal.signal(signal.SIGTERM, lambda *_: node.shutdown())
    try:
        keep = wire(node)  # the core lives as long as the spin; its close() runs after
    except (ParameterError, InterfaceError, ValueError) as exc:
        node.logger.error(str(exc))
        node.destroy()
        return EXIT_CONFIG_ERROR
    node.logger.info(f"running on the {node.backend} backend")
    try:
        node.spin()
    finally:
        close = getattr(keep, "close", None)
        if callable(close):  # a core holding files (a recorder, say) finishes them before exit
            try:
                close()
            except Exception as exc:
                node.logger.error(f"closing {type(keep).__name__} failed: {exc}")
        node.destroy()
    return 0
