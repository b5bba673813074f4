"""The browser playground: watch the rollout, pause, take over with WASD, hand back, roll back, fork, label.

Topics (relative names):
  in  ``camera/image``    sensor_msgs/Image: sent to the page as PNG frames
  in  ``task/status``     hiwm_msgs/TaskStatus: step, coverage, success on the page
  in  ``robot/state``     sensor_msgs/JointState: where the agent is (start of key motion)
  in  ``robot/command``   hiwm_msgs/ActionChunk: the last commanded position, whoever commanded it
  in  ``arbiter/phase``   hiwm_msgs/Phase (latched)
  out ``operator/action`` hiwm_msgs/ActionChunk, source HUMAN: last target + ``step_px`` x key direction
Clients: ``arbiter/set_phase``, ``robot/reset`` and the branch cache's services (names are parameters).

A key message produces one operator action; the next frame echoes that message's ``t_client``,
so the page shows key-to-frame latency. Open http://127.0.0.1:8765/ (the default).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from hiwm.comm import InterfaceError, Node, ServiceCallError, new_message
from hiwm.comm.images import image_to_numpy
from hiwm.comm.qos import DEFAULT, KEEP_ALL, LATCHED
from hiwm.comm.runner import run_node
from hiwm.pusht.messages import action_chunk
from hiwm.teleop.arbiter import AUTONOMOUS, CORRECTING, PAUSED, PHASE_NAMES, SOURCE_HUMAN
from hiwm.teleop.keys import direction, moving
from hiwm.teleop.web import PlaygroundServer, WebConfig

PHASE_COMMANDS = {"pause": PAUSED, "take_over": CORRECTING, "hand_back": AUTONOMOUS}


@dataclass
class TeleopWebConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    token: str = ""
    max_message_bytes: int = 4096
    step_px: float = 12.0  # how far one key message moves the target
    operator_id: str = "browser"
    service_timeout_s: float = 5.0
    branch_cache: str = "branch_cache"  # namespace of the branch cache's services

    def web(self) -> WebConfig:
        return WebConfig(self.host, self.port, self.token, self.max_message_bytes)


class TeleopWeb:
    def __init__(self, node: Node, cfg: TeleopWebConfig) -> None:
        self.node, self.cfg = node, cfg
        self.agent: np.ndarray | None = None
        self.last_target: np.ndarray | None = None
        self.pending_t_client = 0.0
        self.phase: dict | None = None
        self.status: dict | None = None
        self.action_pub = node.create_publisher("hiwm_msgs/msg/ActionChunk", "operator/action", KEEP_ALL)
        node.create_subscription("sensor_msgs/msg/Image", "camera/image", self.on_image, DEFAULT)
        node.create_subscription("hiwm_msgs/msg/TaskStatus", "task/status", self.on_status, DEFAULT)
        node.create_subscription("sensor_msgs/msg/JointState", "robot/state", self.on_state, DEFAULT)
        node.create_subscription("hiwm_msgs/msg/ActionChunk", "robot/command", self.on_command_seen, KEEP_ALL)
        node.create_subscription("hiwm_msgs/msg/Phase", "arbiter/phase", self.on_phase, LATCHED)
        self.set_phase = node.create_client("hiwm_msgs/srv/SetPhase", "arbiter/set_phase")
        self.reset = node.create_client("hiwm_msgs/srv/Reset", "robot/reset")
        bc = cfg.branch_cache.rstrip("/")
        self.bc_rollback = node.create_client("hiwm_msgs/srv/Rollback", f"{bc}/rollback")
        self.bc_fork = node.create_client("hiwm_msgs/srv/Fork", f"{bc}/fork")
        self.bc_label = node.create_client("hiwm_msgs/srv/Label", f"{bc}/label")
        self.bc_list = node.create_client("hiwm_msgs/srv/List", f"{bc}/list")
        self.server = PlaygroundServer(cfg.web(), self.on_keys, self.on_web_command, self.greeting, node.logger)
        self.server.start()
        node.logger.info(f"playground at http://{cfg.host}:{self.server.port}/")

    # -- from the graph (node thread) -----------------------------------------
    def on_image(self, msg: Any) -> None:
        try:
            rgb = image_to_numpy(msg)
        except InterfaceError as exc:
            self.node.bad_input.warning("image", f"refused image: {exc}")
            return
        if msg.encoding == "rgb8":
            rgb = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        ok, png = cv2.imencode(".png", rgb, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if ok:
            t_client, self.pending_t_client = self.pending_t_client, 0.0
            self.server.send_frame(t_client, png.tobytes())

    def on_status(self, msg: Any) -> None:
        self.status = {
            "type": "status",
            "episode_id": msg.episode_id,
            "step": int(msg.step),
            "coverage": float(msg.coverage),
            "success": bool(msg.success),
            "done": bool(msg.done),
            "world": msg.world,
        }
        self.server.send_json(self.status)

    def on_state(self, msg: Any) -> None:
        if len(msg.position) >= 2 and np.all(np.isfinite(msg.position[:2])):
            self.agent = np.asarray(msg.position[:2], dtype=np.float64)

    def on_command_seen(self, msg: Any) -> None:
        data = np.asarray(msg.data, dtype=np.float64)
        if int(msg.action_dim) == 2 and data.size >= 2 and np.all(np.isfinite(data)):
            self.last_target = data[-2:].copy()

    def on_phase(self, msg: Any) -> None:
        self.phase = {"type": "phase", "phase": int(msg.phase), "name": PHASE_NAMES.get(int(msg.phase), "?")}
        self.server.send_json(self.phase)

    def greeting(self) -> list[dict]:
        return [m for m in (self.phase, self.status) if m is not None]

    # -- from the page (server thread) ----------------------------------------
    def on_keys(self, keys: dict[str, bool], t_client: float) -> None:
        if not moving(keys):
            return
        base = self.last_target if self.last_target is not None else self.agent
        if base is None:
            self.node.bad_input.warning("keys", "key input before any robot state: ignored")
            return
        target = np.clip(base + self.cfg.step_px * direction(keys, 1), 0.0, 512.0)
        self.last_target = target
        self.pending_t_client = t_client
        self.action_pub.publish(action_chunk(target, self.node.now_ns(), SOURCE_HUMAN, self.cfg.operator_id))

    async def on_web_command(self, name: str, args: dict) -> dict:
        try:
            return await asyncio.get_running_loop().run_in_executor(None, self._command, name, args)
        except (ServiceCallError, ValueError, TypeError, InterfaceError) as exc:
            return {"success": False, "message": str(exc)}

    def _call(self, client: Any, request_type: str, **fields: Any) -> Any:
        if not client.wait_for_service(min(1.0, self.cfg.service_timeout_s)):
            raise ServiceCallError(f"{client.service} is not available")
        return client.call(new_message(request_type, **fields), timeout=self.cfg.service_timeout_s)

    def _command(self, name: str, args: dict) -> dict:
        if name in PHASE_COMMANDS:
            r = self._call(self.set_phase, "hiwm_msgs/srv/SetPhase_Request", phase=PHASE_COMMANDS[name], reason=name)
            return {"success": bool(r.success), "message": r.message}
        if name == "reset":
            r = self._call(self.reset, "hiwm_msgs/srv/Reset_Request", seed=int(args.get("seed", -1)))
            self.last_target = None
            return {"success": bool(r.success), "message": r.message}
        if name == "tree":
            return self._tree()
        if name == "rollback":
            steps = int(args.get("steps", 1))
            if steps < 1:
                raise ValueError(f"roll back at least 1 step, got {steps}")
            r = self._call(self.bc_rollback, "hiwm_msgs/srv/Rollback_Request", steps=steps)
            self.last_target = None
            return {"success": bool(r.success), "message": r.message, "node_id": r.node_id, "tree": self._tree()}
        if name == "fork":
            r = self._call(self.bc_fork, "hiwm_msgs/srv/Fork_Request", node_id=str(args.get("node_id", "")))
            return {"success": bool(r.success), "message": r.message, "branch_id": r.branch_id, "tree": self._tree()}
        if name == "label":
            labels = [str(x) for x in args.get("labels", [])]
            r = self._call(
                self.bc_label, "hiwm_msgs/srv/Label_Request", branch_id=str(args.get("branch_id", "")), labels=labels
            )
            return {"success": bool(r.success), "message": r.message, "tree": self._tree()}
        raise ValueError(f"unknown command {name!r}")

    def _tree(self) -> dict:
        """The current session's branches from the branch cache, for the page's tree view."""
        try:
            r = self._call(self.bc_list, "hiwm_msgs/srv/List_Request", what="branches")
        except ServiceCallError as exc:
            return {"type": "tree", "available": False, "message": str(exc), "branches": []}
        if not r.success:
            return {"type": "tree", "available": False, "message": r.message, "branches": []}
        branches = []
        for branch_id, details in zip(r.ids, r.details_json, strict=False):
            d = json.loads(details or "{}")
            branches.append(
                {
                    "id": branch_id,
                    "parent_branch": d.get("parent_branch") or "",
                    "fork_step": int(d.get("fork_step") or 0),
                    "steps": int(d.get("steps") or 0),
                    "labels": list(d.get("labels") or []),
                    "human": bool(d.get("human")),
                }
            )
        return {"type": "tree", "available": True, "branches": branches, "time": time.time()}

    def close(self) -> None:
        self.server.stop()


def wire(node: Node) -> TeleopWeb:
    cfg = node.load_config(TeleopWebConfig)
    try:
        return TeleopWeb(node, cfg)
    except OSError as exc:  # the port is taken, or the address is not this machine's
        raise ValueError(f"cannot serve the playground on {cfg.host}:{cfg.port}: {exc}") from exc


def main(argv: list[str] | None = None) -> int:
    return run_node("teleop_web", wire, argv)


if __name__ == "__main__":
    raise SystemExit(main())
