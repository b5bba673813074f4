"""Serves a policy on the robot contract of its task (:mod:`hiwm.tasks.contract`): observations in, chunks out.

Topics (relative; remap ``policy/action:=robot/command`` to drive the robot directly):
  in  ``<camera topic>`` sensor_msgs/Image rgb8, each of the task's cameras (``Camera.topic``); other sizes
                         resized to ``image_size`` (0: the camera's); other encodings, empty or inconsistent
                         images refused with a throttled warning
  in  ``robot/state``    sensor_msgs/JointState: the task's proprio (by name when the names are given,
                         else the first ``proprio_dim`` positions)
  in  ``task/status``    hiwm_msgs/TaskStatus (episode id and done; ``use_status`` false ignores it)
  in  ``arbiter/phase``  hiwm_msgs/Phase (``follow_phase``): handed back to the policy, it queries at once
  out ``policy/action``  hiwm_msgs/ActionChunk of the task's action_dim, source POLICY, source_id = ``policy``
Services: ``~/stats`` (std_srvs/Trigger, JSON: queries, latency p50/p99, refusals).

The messages of one step share a header stamp; an observation is complete when every input
of a stamp has arrived (in any order). The policy sees ``images`` (every camera by name), ``image``
(the first camera) and ``state``. ``policy`` is a checkpoint folder or ``module:Class``
of an outside policy (docs/POLICY_ADAPTER.md). The same node faces the robot or the world model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial

import numpy as np

from hiwm.comm import InterfaceError, Node, new_message
from hiwm.comm.images import image_to_numpy
from hiwm.comm.qos import LATCHED, profile
from hiwm.comm.runner import run_node
from hiwm.data import SOURCE_POLICY
from hiwm.paths import shipped_model
from hiwm.tasks import DEFAULT_TASK, Camera, Task, get_task
from hiwm.tasks.chunks import chunk_message
from hiwm.tasks.contract import ROBOT_STATE, TASK_STATUS
from hiwm.teleop.arbiter import AUTONOMOUS


@dataclass
class PolicyServerConfig:
    policy: str = ""  # checkpoint folder, or module:Class; "": the task's shipped ACT
    task: str = DEFAULT_TASK  # a registered task: its cameras, proprio and action space
    policy_args: str = ""  # JSON object of keyword arguments for module:Class
    device: str = "cpu"
    threads: int = 1  # torch CPU threads
    execute_steps: int = 0  # rows of each chunk to publish (and observations to wait for); 0 = all
    image_size: int = 0  # frames of another size are resized to this (square); 0: each camera's size
    use_status: bool = True  # join task/status for episode boundaries and done
    qos: str = "keep_all"  # inputs and output; keep_all matches the lockstep robot
    dt: float = 0.0  # the chunks' row period (s); 0: the task's control period
    report_period_s: float = 5.0
    follow_phase: bool = True  # query afresh when the arbiter hands back to the policy (arbiter/phase)

    def __post_init__(self) -> None:
        get_task(self.task)
        if not self.policy:
            shipped = shipped_model(self.task, "act")
            if shipped is None:
                raise ValueError(
                    f"parameter 'policy' is required: a checkpoint folder or module:Class"
                    f" (hiwm ships no policy for task {self.task!r})"
                )
            self.policy = str(shipped)
        if self.execute_steps < 0 or not (self.image_size == 0 or self.image_size >= 8) or self.threads < 1:
            raise ValueError("execute_steps must be >= 0, image_size >= 8 (or 0: the camera's), threads >= 1")
        if not (self.dt >= 0):
            raise ValueError(f"dt must be >= 0 s (0: the task's control period), got {self.dt}")


def stamp_key(msg: object) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def resize(image: np.ndarray, size: int) -> np.ndarray:
    import torch

    from hiwm.policy.encoder import resize_images

    x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float()  # a copy: message buffers are read-only
    return resize_images(x, size).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


class PolicyServerNode:
    def __init__(self, node: Node, cfg: PolicyServerConfig) -> None:
        import torch

        from hiwm.policy import CheckpointError, load_policy
        from hiwm.policy.server import PolicyServer

        torch.set_num_threads(cfg.threads)
        try:
            kwargs = json.loads(cfg.policy_args) if cfg.policy_args else {}
            if not isinstance(kwargs, dict):
                raise TypeError("policy_args must be a JSON object")
            policy = load_policy(cfg.policy, device=cfg.device) if not kwargs else load_policy(cfg.policy, **kwargs)
        except (CheckpointError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot load policy {cfg.policy!r}: {exc}") from exc
        self.node, self.cfg = node, cfg
        self.task: Task = get_task(cfg.task)
        self.dt = cfg.dt or 1.0 / self.task.fps
        self.server = PolicyServer(policy, cfg.execute_steps, self.task.action_dim)
        self.pending: dict[int, dict[str, object]] = {}
        self.cameras = [c.name for c in self.task.cameras]
        self.needed = {*(f"image:{c}" for c in self.cameras), "state", *(["status"] if cfg.use_status else [])}
        qos = profile(cfg.qos)
        self.pub = node.create_publisher("hiwm_msgs/msg/ActionChunk", "policy/action", qos)
        for camera in self.task.cameras:
            node.create_subscription("sensor_msgs/msg/Image", camera.topic, partial(self.on_image, camera), qos)
        node.create_subscription("sensor_msgs/msg/JointState", ROBOT_STATE, self.on_state, qos)
        if cfg.use_status:
            node.create_subscription("hiwm_msgs/msg/TaskStatus", TASK_STATUS, self.on_status, qos)
        node.create_service("std_srvs/srv/Trigger", "~/stats", self.on_stats)
        self.latest: tuple | None = None  # the newest complete observation
        self.phase: int | None = None
        if cfg.follow_phase:
            node.create_subscription("hiwm_msgs/msg/Phase", "arbiter/phase", self.on_phase, LATCHED)
        node.create_timer(cfg.report_period_s, self.report)
        warm = self.server.stats.warm_up_ms
        node.logger.info(
            f"serving {cfg.policy} ({self.task.name}: cameras {[node.resolve(c.topic) for c in self.task.cameras]})"
            f" on {node.resolve('policy/action')}" + (f" (warm-up query {warm:.0f} ms)" if warm is not None else "")
        )

    # inputs ------------------------------------------------------------------
    def on_image(self, camera: Camera, msg: object) -> None:
        try:
            if msg.encoding != "rgb8":
                raise InterfaceError(f"encoding {msg.encoding!r} refused: the policy takes rgb8")
            image = image_to_numpy(msg)
        except InterfaceError as exc:
            self.server.stats.refuse("image")
            self.node.bad_input.warning("image", f"refused camera frame: {exc}")
            return
        size = self.cfg.image_size
        if image.shape[:2] != ((size, size) if size else (camera.height, camera.width)):
            size = size or camera.height  # resized square: every task camera is
            self.server.stats.resized += 1
            self.node.bad_input.warning(
                "image.size", f"camera frame is {image.shape[1]}x{image.shape[0]}; resized to {size}"
            )
            image = resize(image, size)
        self.add(stamp_key(msg), f"image:{camera.name}", image)

    def on_state(self, msg: object) -> None:
        names, pos = list(msg.name), np.asarray(msg.position, dtype=np.float64)
        proprio = self.task.observations.proprio
        if len(names) == pos.size and set(proprio) <= set(names):
            pos = pos[[names.index(n) for n in proprio]]  # by name, in the task's order
        n = len(proprio)
        if pos.size < n or not np.all(np.isfinite(pos[:n])):
            self.server.stats.refuse("state")
            self.node.bad_input.warning(
                "state", f"refused robot state {pos.tolist()}: needs {n} finite positions ({', '.join(proprio)})"
            )
            return
        self.add(stamp_key(msg), "state", pos[:n].copy())

    def on_status(self, msg: object) -> None:
        self.add(stamp_key(msg), "status", (str(msg.episode_id), bool(msg.done)))

    def add(self, stamp: int, key: str, value: object) -> None:
        parts = self.pending.setdefault(stamp, {})
        parts[key] = value
        if not self.needed <= parts.keys():
            if len(self.pending) > 64:  # an input that never completes (a source without status, say)
                self.node.bad_input.warning("join", f"dropping incomplete observations; waiting for {self.needed}")
                self.pending = {s: p for s, p in self.pending.items() if s >= stamp}
            return
        del self.pending[stamp]
        self.pending = {s: p for s, p in self.pending.items() if s > stamp}  # older ones can never be used
        episode, done = parts.get("status", ("", False))
        images = {c: parts[f"image:{c}"] for c in self.cameras}
        self.latest = (images, parts["state"], episode, done)
        self.act(*self.latest)

    def on_phase(self, msg: object) -> None:
        """Handed back to the policy: query now. Its last chunk was dropped while the operator drove, and
        a lockstep world waits for a command before it sends another observation."""
        previous, self.phase = self.phase, int(msg.phase)
        if self.phase == AUTONOMOUS and previous not in (None, AUTONOMOUS) and self.latest is not None:
            self.server.remaining = 0
            self.act(*self.latest)

    # output ------------------------------------------------------------------
    def act(self, images: dict[str, np.ndarray], state: np.ndarray, episode: str, done: bool) -> None:
        from hiwm.policy.server import BadPolicyOutput

        try:
            chunk = self.server.on_observation(images[self.cameras[0]], state, episode, done, images)
        except (BadPolicyOutput, ValueError) as exc:
            self.server.stats.refuse("policy")
            self.node.bad_input.warning("policy", f"no action published: {exc}")
            self.server.remaining = 0
            return
        if chunk is not None:
            self.pub.publish(chunk_message(chunk, self.node.now_ns(), SOURCE_POLICY, self.cfg.policy, self.dt))

    def on_stats(self, _request: object) -> object:
        doc = {"policy": self.cfg.policy, **self.server.stats.summary()}
        return new_message("std_srvs/srv/Trigger_Response", success=True, message=json.dumps(doc))

    def report(self) -> None:
        s = self.server.stats.summary()
        if s["queries"]:
            self.node.logger.info(
                f"{s['queries']} queries, latency p50 {s['latency_ms_p50']:.1f} ms p99 {s['latency_ms_p99']:.1f} ms"
            )


def wire(node: Node) -> PolicyServerNode:
    return PolicyServerNode(node, node.load_config(PolicyServerConfig))


def main(argv: list[str] | None = None) -> int:
    return run_node("policy_server", wire, argv)


if __name__ == "__main__":
    raise SystemExit(main())
