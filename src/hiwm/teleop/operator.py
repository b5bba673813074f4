"""What an operator can do, whatever the input device: jog the robot, change phase, reset, and
roll back, fork and label through the branch cache. The browser and terminal bridges share it.

Keys jog as the task says (:class:`hiwm.tasks.jog.Jogger`): a step in the action space, or of the
end effector through the task's IK. Topics (relative names): in ``robot/state`` (the task's action
dimensions by name) and ``robot/command`` (the last commanded action, whoever commanded it: key
motion continues from there, so taking over never jumps); out ``operator/action``
(hiwm_msgs/ActionChunk of the task's ``action_dim``, source HUMAN). Clients: ``arbiter/set_phase``,
``robot/reset`` and ``<branch_cache>/{rollback,fork,label,list}``; ``task/status`` names the current
session (the world model's episode) for rollback and the tree.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from hiwm.comm import Node, ServiceCallError, new_message
from hiwm.comm.qos import DEFAULT, KEEP_ALL
from hiwm.tasks import Task
from hiwm.tasks.jog import Jogger
from hiwm.teleop.arbiter import AUTONOMOUS, CORRECTING, PAUSED, SOURCE_HUMAN

PHASE_COMMANDS = {"pause": PAUSED, "take_over": CORRECTING, "hand_back": AUTONOMOUS}
# Each command's arguments and their kinds; anything else is refused with a message naming it.
COMMAND_ARGS: dict[str, dict[str, str]] = {
    "pause": {},
    "take_over": {},
    "hand_back": {},
    "tree": {},
    "reset": {"seed": "int"},
    "rollback": {"steps": "int"},
    "fork": {"node_id": "str", "label": "str"},
    "label": {"labels": "list[str]", "branch_id": "str"},
}
INT_RANGES = {"seed": (-(2**63), 2**63 - 1), "steps": (1, 2**32 - 1)}  # Reset.seed int64, Rollback.steps uint32


def check_args(name: str, args: object) -> dict:
    """``args`` of command ``name`` checked against :data:`COMMAND_ARGS`: whole numbers in their
    message field's range (integral floats allowed, as JavaScript sends them), strings, lists of
    strings. Raises ValueError naming the command and the argument."""
    if not isinstance(name, str) or name not in COMMAND_ARGS:
        raise ValueError(f"unknown command {_short(name)}; commands are {list(COMMAND_ARGS)}")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ValueError(f"{name}: args must be an object, got {type(args).__name__}")
    spec = COMMAND_ARGS[name]
    unknown = sorted(str(k) for k in args if k not in spec)
    if unknown:
        takes = f"takes {', '.join(spec)}" if spec else "takes no arguments"
        raise ValueError(f"{name} {takes}; got unknown argument(s) {unknown}")
    out: dict = {}
    for key, value in args.items():
        kind = spec[key]
        if kind == "int":
            lo, hi = INT_RANGES[key]
            if isinstance(value, float) and math.isfinite(value) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"{name}: {key} must be a whole number in [{lo}, {hi}], got {_short(value)}")
        elif kind == "str":
            if not isinstance(value, str):
                raise ValueError(f"{name}: {key} must be a string, got {type(value).__name__}")
        elif not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise ValueError(f"{name}: {key} must be a list of strings, got {_short(value)}")
        out[key] = value
    return out


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class OperatorConfig:
    step_scale: float = 1.0  # multiplies the task's step per key press
    operator_id: str = "operator"
    service_timeout_s: float = 5.0
    branch_cache: str = "branch_cache"  # namespace of the branch cache's services


class Operator:
    def __init__(self, node: Node, cfg: OperatorConfig, task: Task) -> None:
        self.node, self.cfg, self.task = node, cfg, task
        self.jogger = Jogger(task, cfg.step_scale)
        self.measured: np.ndarray | None = None  # the action dimensions as robot/state last reported them
        self.last_target: np.ndarray | None = None
        self.episode_id = ""  # the world model's session in the branch cache
        self.action_pub = node.create_publisher("hiwm_msgs/msg/ActionChunk", "operator/action", KEEP_ALL)
        node.create_subscription("sensor_msgs/msg/JointState", "robot/state", self.on_state, DEFAULT)
        node.create_subscription("hiwm_msgs/msg/ActionChunk", "robot/command", self.on_command_seen, KEEP_ALL)
        node.create_subscription("hiwm_msgs/msg/TaskStatus", "task/status", self.on_status, DEFAULT)
        self.set_phase = node.create_client("hiwm_msgs/srv/SetPhase", "arbiter/set_phase")
        self.reset = node.create_client("hiwm_msgs/srv/Reset", "robot/reset")
        bc = cfg.branch_cache.rstrip("/")
        self.bc_rollback = node.create_client("hiwm_msgs/srv/Rollback", f"{bc}/rollback")
        self.bc_fork = node.create_client("hiwm_msgs/srv/Fork", f"{bc}/fork")
        self.bc_label = node.create_client("hiwm_msgs/srv/Label", f"{bc}/label")
        self.bc_list = node.create_client("hiwm_msgs/srv/List", f"{bc}/list")

    def on_state(self, msg: Any) -> None:
        position = np.asarray(msg.position, dtype=np.float64)
        names = list(msg.name)
        wanted = self.task.action.names
        if names and set(wanted) <= set(names) and len(names) == len(position):
            values = position[[names.index(n) for n in wanted]]
        elif not names and len(position) >= len(wanted):  # unnamed: the action's dimensions first
            values = position[: len(wanted)]
        else:
            self.node.bad_input.warning("state", f"robot/state names {names[:8]} lack the actions {list(wanted)}")
            return
        if np.all(np.isfinite(values)):
            self.measured = values

    def on_status(self, msg: Any) -> None:
        self.episode_id = str(msg.episode_id)

    def on_command_seen(self, msg: Any) -> None:
        data = np.asarray(msg.data, dtype=np.float64)
        dim = self.jogger.dim
        if int(msg.action_dim) == dim and data.size >= dim and np.all(np.isfinite(data)):
            self.last_target = data[-dim:].copy()

    def jog(self, pressed: list[str]) -> bool:
        """Send one operator action: one step of every key in ``pressed`` from the last target. False if
        no jog key is pressed or there is nothing to move from yet (no robot state seen)."""
        if self.last_target is not None:
            base = self.last_target
        elif self.measured is not None:
            base = self.jogger.hold(self.measured)
        else:
            self.node.bad_input.warning("keys", "key input before any robot state: ignored")
            return False
        target = self.jogger.jog(base, pressed)
        if target is None:
            return False
        self.last_target = target
        self.action_pub.publish(self.chunk(target))
        return True

    def chunk(self, action: np.ndarray) -> Any:
        """One operator action as an ActionChunk (horizon 1)."""
        return new_message(
            "hiwm_msgs/msg/ActionChunk",
            header=self.node.header("world"),
            source=SOURCE_HUMAN,
            source_id=self.cfg.operator_id,
            horizon=1,
            action_dim=action.size,
            dt=1.0 / self.task.fps,
            data=np.asarray(action, dtype=np.float32),
        )

    # -- commands (blocking service calls: call them off the node's spin thread) --------
    def _call(self, client: Any, request_type: str, **fields: Any) -> Any:
        if not client.wait_for_service(self.cfg.service_timeout_s):
            raise ServiceCallError(f"{client.service} is not available")
        return client.call(new_message(request_type, **fields), timeout=self.cfg.service_timeout_s)

    def command(self, name: str, args: dict | None = None) -> dict:
        """Run one operator command; returns ``{"success", "message", ...}``. Raises ServiceCallError
        when a service is missing or silent, ValueError for bad arguments (see :func:`check_args`)."""
        args = check_args(name, args)
        if name in PHASE_COMMANDS:
            r = self._call(self.set_phase, "hiwm_msgs/srv/SetPhase_Request", phase=PHASE_COMMANDS[name], reason=name)
            return {"success": bool(r.success), "message": r.message}
        if name == "reset":
            r = self._call(self.reset, "hiwm_msgs/srv/Reset_Request", seed=args.get("seed", -1))
            self.last_target = None
            return {"success": bool(r.success), "message": r.message}
        if name == "tree":
            return self.tree()
        if name == "rollback":
            steps = args.get("steps", 1)
            r = self._call(self.bc_rollback, "hiwm_msgs/srv/Rollback_Request", session_id=self.episode_id, steps=steps)
            self.last_target = None
            return {"success": bool(r.success), "message": r.message, "node_id": r.node_id, "tree": self.tree()}
        if name == "fork":  # at the given node, else where the world model is now
            node_id = args.get("node_id") or str(self.cursor()["cursor_node"] or "")
            r = self._call(self.bc_fork, "hiwm_msgs/srv/Fork_Request", node_id=node_id, label=args.get("label", ""))
            return {"success": bool(r.success), "message": r.message, "branch_id": r.branch_id, "tree": self.tree()}
        if name == "label":  # the given branch, else the one the world model is on
            labels = args.get("labels", [])
            branch = args.get("branch_id") or str(self.cursor()["cursor_branch"] or "")
            r = self._call(self.bc_label, "hiwm_msgs/srv/Label_Request", branch_id=branch, labels=labels)
            return {"success": bool(r.success), "message": r.message, "tree": self.tree()}
        raise ValueError(f"unknown command {name!r}")

    def cursor(self) -> dict:
        """The branch cache's record of the current session: ``cursor_node`` and ``cursor_branch``."""
        r = self._call(self.bc_list, "hiwm_msgs/srv/List_Request", what="sessions")
        for sid, details in zip(r.ids, r.details_json, strict=False):
            if sid == self.episode_id:
                return json.loads(details)
        raise ValueError(f"the branch cache has no session {self.episode_id!r} yet")

    def tree(self) -> dict:
        """The current session's branches from the branch cache, for a tree view."""
        try:
            r = self._call(self.bc_list, "hiwm_msgs/srv/List_Request", what="branches", session_id=self.episode_id)
        except ServiceCallError as exc:
            return {"type": "tree", "available": False, "message": str(exc), "branches": []}
        if not r.success:
            return {"type": "tree", "available": False, "message": r.message, "branches": []}
        branches = []
        for branch_id, details in zip(r.ids, r.details_json, strict=False):
            d = json.loads(details or "{}")
            fork_step = 0
            if d.get("base_node"):  # where the branch leaves its parent
                base = self._call(self.bc_list, "hiwm_msgs/srv/List_Request", what="node", branch_id=d["base_node"])
                fork_step = int(json.loads(base.details_json[0])["step"]) + 1 if base.success else 0
            branches.append(
                {
                    "id": branch_id,
                    "parent_branch": d.get("parent_branch") or "",
                    "fork_step": fork_step,
                    "steps": int(d.get("length") or 0),
                    "labels": list(d.get("labels") or []),
                    "human": False,
                }
            )
        return {"type": "tree", "available": True, "branches": branches}
