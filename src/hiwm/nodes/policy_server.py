"""Serves a policy on the robot contract: observations in, action chunks out.

Topics (relative; remap ``policy/action:=robot/command`` to drive the robot directly):
  in  ``camera/image``  sensor_msgs/Image rgb8 (other sizes resized to ``image_size``; other encodings, empty
                        or inconsistent images refused with a throttled warning)
  in  ``robot/state``   sensor_msgs/JointState, position[:2] = agent x, y
  in  ``task/status``   hiwm_msgs/TaskStatus (episode id and done; ``use_status`` false ignores it)
  in  ``arbiter/phase`` hiwm_msgs/Phase (``follow_phase``): handed back to the policy, it queries at once
  out ``policy/action`` hiwm_msgs/ActionChunk, source POLICY, source_id = ``policy``
Services: ``~/stats`` (std_srvs/Trigger, JSON: queries, latency p50/p99, refusals).

The messages of one step share a header stamp; an observation is complete when every input
of a stamp has arrived (in any order). ``policy`` is a checkpoint folder or ``module:Class``
of an outside policy (docs/POLICY_ADAPTER.md). The same node faces the robot or the world model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from hiwm.comm import InterfaceError, Node, new_message
from hiwm.comm.images import image_to_numpy
from hiwm.comm.qos import LATCHED, profile
from hiwm.comm.runner import run_node
from hiwm.data import SOURCE_POLICY
from hiwm.tasks.pusht.messages import action_chunk
from hiwm.teleop.arbiter import AUTONOMOUS


@dataclass
class PolicyServerConfig:
    policy: str = ""  # checkpoint folder, or module:Class
    policy_args: str = ""  # JSON object of keyword arguments for module:Class
    device: str = "cpu"
    threads: int = 1  # torch CPU threads
    execute_steps: int = 0  # rows of each chunk to publish (and observations to wait for); 0 = all
    image_size: int = 96  # frames of another size are resized to this
    use_status: bool = True  # join task/status for episode boundaries and done
    qos: str = "keep_all"  # inputs and output; keep_all matches the lockstep robot
    dt: float = 0.1
    report_period_s: float = 5.0
    follow_phase: bool = True  # query afresh when the arbiter hands back to the policy (arbiter/phase)

    def __post_init__(self) -> None:
        if not self.policy:
            raise ValueError("parameter 'policy' is required: a checkpoint folder or module:Class")
        if self.execute_steps < 0 or self.image_size < 8 or self.threads < 1:
            raise ValueError("execute_steps must be >= 0, image_size >= 8, threads >= 1")


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
        self.server = PolicyServer(policy, cfg.execute_steps)
        self.pending: dict[int, dict[str, object]] = {}
        self.needed = {"image", "state", "status"} if cfg.use_status else {"image", "state"}
        qos = profile(cfg.qos)
        self.pub = node.create_publisher("hiwm_msgs/msg/ActionChunk", "policy/action", qos)
        node.create_subscription("sensor_msgs/msg/Image", "camera/image", self.on_image, qos)
        node.create_subscription("sensor_msgs/msg/JointState", "robot/state", self.on_state, qos)
        if cfg.use_status:
            node.create_subscription("hiwm_msgs/msg/TaskStatus", "task/status", self.on_status, qos)
        node.create_service("std_srvs/srv/Trigger", "~/stats", self.on_stats)
        self.latest: tuple | None = None  # the newest complete observation
        self.phase: int | None = None
        if cfg.follow_phase:
            node.create_subscription("hiwm_msgs/msg/Phase", "arbiter/phase", self.on_phase, LATCHED)
        node.create_timer(cfg.report_period_s, self.report)
        warm = self.server.stats.warm_up_ms
        node.logger.info(
            f"serving {cfg.policy} on {node.resolve('policy/action')}"
            + (f" (warm-up query {warm:.0f} ms)" if warm is not None else "")
        )

    # inputs ------------------------------------------------------------------
    def on_image(self, msg: object) -> None:
        try:
            if msg.encoding != "rgb8":
                raise InterfaceError(f"encoding {msg.encoding!r} refused: the policy takes rgb8")
            image = image_to_numpy(msg)
        except InterfaceError as exc:
            self.server.stats.refuse("image")
            self.node.bad_input.warning("image", f"refused camera frame: {exc}")
            return
        if image.shape[:2] != (self.cfg.image_size, self.cfg.image_size):
            self.server.stats.resized += 1
            self.node.bad_input.warning(
                "image.size", f"camera frame is {image.shape[1]}x{image.shape[0]}; resized to {self.cfg.image_size}"
            )
            image = resize(image, self.cfg.image_size)
        self.add(stamp_key(msg), "image", image)

    def on_state(self, msg: object) -> None:
        pos = np.asarray(msg.position, dtype=np.float64)
        if pos.size < 2 or not np.all(np.isfinite(pos[:2])):
            self.server.stats.refuse("state")
            self.node.bad_input.warning("state", f"refused robot state {pos.tolist()}: needs 2 finite positions")
            return
        self.add(stamp_key(msg), "state", pos[:2].copy())

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
        self.latest = (parts["image"], parts["state"], episode, done)
        self.act(*self.latest)

    def on_phase(self, msg: object) -> None:
        """Handed back to the policy: query now. Its last chunk was dropped while the operator drove, and
        a lockstep world waits for a command before it sends another observation."""
        previous, self.phase = self.phase, int(msg.phase)
        if self.phase == AUTONOMOUS and previous not in (None, AUTONOMOUS) and self.latest is not None:
            self.server.remaining = 0
            self.act(*self.latest)

    # output ------------------------------------------------------------------
    def act(self, image: np.ndarray, state: np.ndarray, episode: str, done: bool) -> None:
        from hiwm.policy.server import BadPolicyOutput

        try:
            chunk = self.server.on_observation(image, state, episode, done)
        except (BadPolicyOutput, ValueError) as exc:
            self.server.stats.refuse("policy")
            self.node.bad_input.warning("policy", f"no action published: {exc}")
            self.server.remaining = 0
            return
        if chunk is not None:
            self.pub.publish(action_chunk(chunk, self.node.now_ns(), SOURCE_POLICY, self.cfg.policy, self.cfg.dt))

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
