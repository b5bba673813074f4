"""Test peer standing in for the world-model node on its branch cache contract (a real process on DDS).

A tiny deterministic world: the state is (x, y, t); an action (dx, dy) adds to x, y. Its snapshot is the
state as JSON (id = sha256), its frame a 32x32 PNG drawn from the state. It publishes, per step, a
StateSnapshot on ``world_model/snapshot`` and a StateHandle on ``world_model/state`` (keep-all), steps
on ``robot/command`` (hiwm_msgs/ActionChunk, one step per row, the chunk's source), starts a session
on ``world_model/reset`` (hiwm_msgs/Reset, seed -> session ``sess-<seed>``), serves
``world_model/restore`` and records every restore request (``~/restores`` answers them as JSON).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from hiwm.branch_cache.export import encode_png
from hiwm.comm import Node, new_message
from hiwm.comm.qos import KEEP_ALL
from hiwm.comm.runner import run_node


def render(state: dict) -> bytes:
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    image[:, :, 0] = int(state["x"] * 10) % 256
    image[:, :, 1] = int(state["y"] * 10) % 256
    image[: state["t"] % 32, :, 2] = 255
    return encode_png(image)


class WorldPeer:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.session, self.state, self.snapshot_id = "", {"x": 0.0, "y": 0.0, "t": 0}, ""
        self.known: dict[str, dict] = {}
        self.restores: list[str] = []
        self.snap_pub = node.create_publisher("hiwm_msgs/msg/StateSnapshot", "world_model/snapshot", KEEP_ALL)
        self.state_pub = node.create_publisher("hiwm_msgs/msg/StateHandle", "world_model/state", KEEP_ALL)
        node.create_subscription("hiwm_msgs/msg/ActionChunk", "robot/command", self.on_command, KEEP_ALL)
        node.create_service("hiwm_msgs/srv/Reset", "world_model/reset", self.on_reset)
        node.create_service("hiwm_msgs/srv/Restore", "world_model/restore", self.on_restore)
        node.create_service("std_srvs/srv/Trigger", "~/restores", self.on_restores)

    def publish(self, parent: str, source: int, action: list[float]) -> None:
        data = json.dumps(self.state, sort_keys=True).encode()
        self.snapshot_id = hashlib.sha256(data).hexdigest()
        self.known[self.snapshot_id] = dict(self.state)
        header = self.node.header()
        self.snap_pub.publish(
            new_message(
                "hiwm_msgs/msg/StateSnapshot", header=header, session_id=self.session, snapshot_id=self.snapshot_id,
                data=np.frombuffer(data, np.uint8), observation_state=np.array([self.state["x"], self.state["y"]],
                np.float32),
            )
        )  # fmt: skip
        self.state_pub.publish(
            new_message(
                "hiwm_msgs/msg/StateHandle", header=header, session_id=self.session, snapshot_id=self.snapshot_id,
                parent_snapshot_id=parent, step=self.state["t"], action_source=source,
                action=np.asarray(action, np.float32), thumbnail_png=np.frombuffer(render(self.state), np.uint8),
            )
        )  # fmt: skip

    def on_reset(self, req: object) -> object:
        self.session = f"sess-{req.seed}"
        self.state = {"x": 0.0, "y": 0.0, "t": 0}
        self.publish("", 0, [])
        return new_message("hiwm_msgs/srv/Reset_Response", success=True, episode_id=self.session)

    def on_command(self, msg: object) -> None:
        rows = np.asarray(msg.data, np.float32).reshape(int(msg.horizon), int(msg.action_dim))
        for row in rows:
            parent = self.snapshot_id
            self.state = {
                "x": round(self.state["x"] + float(row[0]), 4),
                "y": round(self.state["y"] + float(row[1]), 4),
                "t": self.state["t"] + 1,
            }
            self.publish(parent, int(msg.source), [float(v) for v in row])

    def on_restore(self, req: object) -> object:
        self.restores.append(req.snapshot_id)
        state = self.known.get(req.snapshot_id)
        if state is None:
            return new_message("hiwm_msgs/srv/Restore_Response", success=False, message="unknown snapshot")
        self.state, self.snapshot_id = dict(state), req.snapshot_id
        return new_message("hiwm_msgs/srv/Restore_Response", success=True, message="restored", step=state["t"])

    def on_restores(self, _req: object) -> object:
        return new_message("std_srvs/srv/Trigger_Response", success=True, message=json.dumps(self.restores))


if __name__ == "__main__":
    raise SystemExit(run_node("world_model_peer", WorldPeer))
