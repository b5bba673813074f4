"""Test peer: republishes what arrives on ``in`` to ``out`` and counts it (``~/count``)."""

from __future__ import annotations

from dataclasses import dataclass

from hiwm.comm import Node, new_message
from hiwm.comm.qos import profile
from hiwm.comm.runner import run_node


@dataclass
class RelayConfig:
    type: str = "std_msgs/msg/String"
    qos: str = "keep_all"


def wire(node: Node) -> list:
    cfg = node.load_config(RelayConfig)
    count = [0]
    pub = node.create_publisher(cfg.type, "out", profile(cfg.qos))

    def on_msg(msg: object) -> None:
        count[0] += 1
        pub.publish(msg)

    node.create_subscription(cfg.type, "in", on_msg, profile(cfg.qos))
    node.create_service(
        "std_srvs/srv/Trigger",
        "~/count",
        lambda _req: new_message("std_srvs/srv/Trigger_Response", success=True, message=str(count[0])),
    )
    return count


if __name__ == "__main__":
    raise SystemExit(run_node("relay", wire))
