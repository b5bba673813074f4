"""Keyboard teleop in a terminal, for machines without a browser.

Keys: W A S D move (each press, or auto-repeat while held, is one step of ``step_px``);
P pause, T take over, H hand back, B roll back ``rollback_steps``, F fork, G / X label the
branch success / failure, R reset, Q quit. Topics and services are the operator's
(:mod:`hiwm.teleop.operator`). Commands run in order in a worker thread, so the node keeps spinning.
"""

from __future__ import annotations

import os
import queue
import select
import sys
import termios
import threading
import tty
from dataclasses import dataclass

from hiwm.comm import InterfaceError, Node, ServiceCallError
from hiwm.comm.runner import run_node
from hiwm.teleop.keys import direction
from hiwm.teleop.operator import Operator, OperatorConfig

HELP = (
    "W/A/S/D move  P pause  T take over  H hand back  B roll back  F fork  G/X label success/failure  R reset  Q quit"
)


@dataclass
class TeleopKeyboardConfig:
    step_px: float = 12.0
    operator_id: str = "keyboard"
    service_timeout_s: float = 5.0
    branch_cache: str = "branch_cache"
    rollback_steps: int = 10
    poll_hz: float = 100.0


def key_command(key: str, rollback_steps: int) -> tuple[str, dict] | None:
    """The operator command a (lower-case) key stands for, if any."""
    return {
        "p": ("pause", {}),
        "t": ("take_over", {}),
        "h": ("hand_back", {}),
        "b": ("rollback", {"steps": rollback_steps}),
        "f": ("fork", {}),
        "g": ("label", {"labels": ["success"]}),
        "x": ("label", {"labels": ["failure"]}),
        "r": ("reset", {"seed": -1}),
    }.get(key)


class TeleopKeyboard:
    def __init__(self, node: Node, cfg: TeleopKeyboardConfig) -> None:
        if not sys.stdin.isatty():
            raise ValueError("teleop_keyboard needs a terminal on standard input")
        self.node, self.cfg = node, cfg
        op = OperatorConfig(cfg.step_px, cfg.operator_id, cfg.service_timeout_s, cfg.branch_cache)
        self.operator = Operator(node, op)
        self.fd = sys.stdin.fileno()
        self.saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd)  # keys arrive one by one, unechoed; Ctrl-C still interrupts
        self.commands: queue.Queue[tuple[str, dict]] = queue.Queue()
        threading.Thread(target=self.run_commands, name="operator-commands", daemon=True).start()
        node.create_timer(1.0 / cfg.poll_hz, self.poll)
        self.say(HELP)

    def say(self, text: str) -> None:
        sys.stdout.write(text + "\r\n")
        sys.stdout.flush()

    def poll(self) -> None:
        while select.select([self.fd], [], [], 0)[0]:
            data = os.read(self.fd, 64)
            if not data:
                self.node.shutdown()
                return
            for key in data.decode(errors="ignore").lower():
                self.on_key(key)

    def on_key(self, key: str) -> None:
        if key == "q":
            self.node.shutdown()
        elif key in "wasd":
            self.operator.move(direction({key: True}, 1))
        elif (cmd := key_command(key, self.cfg.rollback_steps)) is not None:
            self.commands.put(cmd)

    def run_commands(self) -> None:
        """One at a time, in the order pressed, off the spin thread (service calls block)."""
        while True:
            name, args = self.commands.get()
            try:
                result = self.operator.command(name, args)
                self.say(f"{name}: {'ok' if result['success'] else 'FAILED'} {result.get('message', '')}")
            except (ServiceCallError, ValueError, InterfaceError) as exc:
                self.say(f"{name}: FAILED {exc}")

    def close(self) -> None:
        termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


def wire(node: Node) -> TeleopKeyboard:
    return TeleopKeyboard(node, node.load_config(TeleopKeyboardConfig))


def main(argv: list[str] | None = None) -> int:
    return run_node("teleop_keyboard", wire, argv)


if __name__ == "__main__":
    raise SystemExit(main())
