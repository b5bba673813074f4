"""Keyboard teleop in a terminal, for machines without a browser.

The ``task`` parameter (a registered task's name) sets the jog keys (a 2-D agent: W A S D;
an arm: its end effector and gripper); each press, or auto-repeat while held, is one
step. P pause, T take over, H hand back, B roll back ``rollback_steps``, F fork, G / X label the
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
from hiwm.tasks import DEFAULT_TASK, get_task
from hiwm.teleop.operator import Operator, OperatorConfig

COMMAND_HELP = "P pause  T take over  H hand back  B roll back  F fork  G/X label success/failure  R reset  Q quit"
COMMAND_KEYS = "pthbfgxrq"


@dataclass
class TeleopKeyboardConfig:
    task: str = DEFAULT_TASK  # a registered task (hiwm tasks): its jog keys
    step_scale: float = 1.0  # multiplies the task's jog steps
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


def help_line(keys: list[dict]) -> str:
    """The key help: the task's jog keys (``W up  S down ...``), then the commands."""
    jog = "  ".join(f"{k['key'].upper()} {k['label']}" for k in keys)
    return f"{jog}  {COMMAND_HELP}"


class TeleopKeyboard:
    def __init__(self, node: Node, cfg: TeleopKeyboardConfig) -> None:
        self.node, self.cfg = node, cfg
        task = get_task(cfg.task)
        clash = sorted(set(k.key for k in task.jog.keys) & set(COMMAND_KEYS))
        if clash:
            raise ValueError(f"task {task.name}'s jog keys {clash} are the keyboard's command keys ({COMMAND_KEYS})")
        if not sys.stdin.isatty():
            raise ValueError("teleop_keyboard needs a terminal on standard input")
        op = OperatorConfig(cfg.step_scale, cfg.operator_id, cfg.service_timeout_s, cfg.branch_cache)
        self.operator = Operator(node, op, task)
        self.fd = sys.stdin.fileno()
        self.saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd)  # keys arrive one by one, unechoed; Ctrl-C still interrupts
        self.commands: queue.Queue[tuple[str, dict]] = queue.Queue()
        threading.Thread(target=self.run_commands, name="operator-commands", daemon=True).start()
        node.create_timer(1.0 / cfg.poll_hz, self.poll)
        self.say(help_line(self.operator.jogger.help()))

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
        elif key in self.operator.jogger.bindings:
            self.operator.jog([key])
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
