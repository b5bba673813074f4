"""The browser playground: watch the rollout, pause, take over with the task's keys, hand back, roll back, fork, label.

The ``task`` parameter (a registered task's name) says which cameras the page shows and what its
keys do (:mod:`hiwm.tasks.jog`: steps in the action space, or of the end effector through IK).
Topics (relative names):
  in  each of the task's camera topics (sensor_msgs/Image rgb8): one labelled view per camera
  in  ``task/status``     hiwm_msgs/TaskStatus: step, the success metric, success on the page
  in  ``arbiter/phase``   hiwm_msgs/Phase (latched)
  plus the operator's topics and clients (:mod:`hiwm.teleop.operator`): out ``operator/action``.

A key message produces one operator action; each camera's next frame echoes that message's
``t_client``, so the page shows key-to-frame latency. Open http://127.0.0.1:8765/ (the default). Only the page's
own origin may open the websocket (:mod:`hiwm.teleop.web`). Beyond loopback the server needs a token:
from the file ``token_file`` names, else the environment variable ``HIWM_TELEOP_TOKEN``; never a
parameter (anyone on the graph reads those) nor a command-line argument.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from hiwm.comm import InterfaceError, Node, ServiceCallError
from hiwm.comm.images import encode_png, image_to_numpy
from hiwm.comm.params import ParameterError, read_secret, secret_file_exposed
from hiwm.comm.qos import DEFAULT, LATCHED
from hiwm.comm.runner import run_node
from hiwm.tasks import DEFAULT_TASK, Task, get_task
from hiwm.teleop.arbiter import PHASE_NAMES
from hiwm.teleop.keys import pressed
from hiwm.teleop.operator import Operator, OperatorConfig
from hiwm.teleop.web import TOKEN_ENV, PlaygroundServer, WebConfig


@dataclass
class TeleopWebConfig:
    task: str = DEFAULT_TASK  # a registered task (hiwm tasks): its cameras and jog keys
    host: str = "127.0.0.1"
    port: int = 8765
    token_file: str = ""  # a file holding the token (else $HIWM_TELEOP_TOKEN); the token is never a parameter
    allowed_hosts: list[str] = field(default_factory=list)  # more Host names the page is served under
    max_message_bytes: int = 4096
    step_scale: float = 1.0  # multiplies the task's jog steps
    operator_id: str = "browser"
    service_timeout_s: float = 5.0
    branch_cache: str = "branch_cache"  # namespace of the branch cache's services

    def web(self, token: str) -> WebConfig:
        return WebConfig(self.host, self.port, token, self.max_message_bytes, tuple(self.allowed_hosts))

    def operator(self) -> OperatorConfig:
        return OperatorConfig(self.step_scale, self.operator_id, self.service_timeout_s, self.branch_cache)


class TeleopWeb:
    def __init__(self, node: Node, cfg: TeleopWebConfig, token: str = "", task: Task | None = None) -> None:
        self.node, self.cfg = node, cfg
        self.task = task or get_task(cfg.task)
        self.operator = Operator(node, cfg.operator(), self.task)
        self.pending_t_client = [0.0] * len(self.task.cameras)  # per camera: the key message its next frame echoes
        self.phase: dict | None = None
        self.status: dict | None = None
        for index, camera in enumerate(self.task.cameras):
            node.create_subscription("sensor_msgs/msg/Image", camera.topic, partial(self.on_image, index), DEFAULT)
        node.create_subscription("hiwm_msgs/msg/TaskStatus", "task/status", self.on_status, DEFAULT)
        node.create_subscription("hiwm_msgs/msg/Phase", "arbiter/phase", self.on_phase, LATCHED)
        self.server = PlaygroundServer(
            cfg.web(token),
            self.on_keys,
            self.on_web_command,
            self.greeting,
            node.logger,
            keys=self.operator.jogger.keys,
            task=self.page_task(),
        )
        self.server.start()
        node.logger.info(f"playground at http://{cfg.host}:{self.server.port}/ (task {self.task.name})")

    def page_task(self) -> dict:
        """What the page needs of the task: its cameras (one view each, in order) and its keys."""
        return {
            "name": self.task.name,
            "action_dim": self.task.action_dim,
            "action_names": list(self.task.action.names),
            "success_metric": self.task.success.metric,
            "cameras": [
                {"name": c.name, "topic": self.node.resolve(c.topic), "height": c.height, "width": c.width}
                for c in self.task.cameras
            ],
            "keys": self.operator.jogger.help(),
        }

    # -- from the graph (node thread) -----------------------------------------
    def on_image(self, camera: int, msg: Any) -> None:
        try:
            if msg.encoding != "rgb8":
                raise InterfaceError(f"encoding {msg.encoding!r}, expected rgb8")
            png = encode_png(image_to_numpy(msg))
        except InterfaceError as exc:  # an empty, inconsistent or absurd image: the page keeps its last frame
            self.node.bad_input.warning("image", f"refused image: {exc}")
            return
        t_client, self.pending_t_client[camera] = self.pending_t_client[camera], 0.0
        self.server.send_frame(t_client, camera, png)

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

    def on_phase(self, msg: Any) -> None:
        self.phase = {"type": "phase", "phase": int(msg.phase), "name": PHASE_NAMES.get(int(msg.phase), "?")}
        self.server.send_json(self.phase)

    def greeting(self) -> list[dict]:
        return [m for m in (self.phase, self.status) if m is not None]

    # -- from the page (server thread) ----------------------------------------
    def on_keys(self, keys: dict[str, bool], t_client: float) -> None:
        down = pressed(keys)
        if down:
            self.pending_t_client = [t_client] * len(self.pending_t_client)  # the frames this action produces echo it
            self.operator.jog(down)

    async def on_web_command(self, name: str, args: dict) -> dict:
        try:
            return await asyncio.get_running_loop().run_in_executor(None, self.operator.command, name, args)
        except (ServiceCallError, ValueError, TypeError, InterfaceError) as exc:
            return {"success": False, "message": str(exc)}

    def close(self) -> None:
        self.server.stop()


def wire(node: Node) -> TeleopWeb:
    if node.parameter_given("token"):  # a secret on the command line is already visible to `ps`
        raise ParameterError(
            f"the token is not a parameter: put it in a file named by 'token_file', or in ${TOKEN_ENV}"
        )
    cfg = node.load_config(TeleopWebConfig)
    token = read_secret(cfg.token_file, TOKEN_ENV)
    if cfg.token_file and secret_file_exposed(cfg.token_file):
        node.logger.warning(f"token file {cfg.token_file} is readable by other users (chmod 600 it)")
    try:
        return TeleopWeb(node, cfg, token)
    except OSError as exc:  # the port is taken, or the address is not this machine's
        raise ValueError(f"cannot serve the playground on {cfg.host}:{cfg.port}: {exc}") from exc


def main(argv: list[str] | None = None) -> int:
    return run_node("teleop_web", wire, argv)


if __name__ == "__main__":
    raise SystemExit(main())
