"""Records a task's robot traffic: episodes into a LeRobot v3 dataset, raw messages into MCAP.

Parameters: ``task`` (a registered task, ``hiwm tasks``; the default task unless given) decides the
topics and the dataset's layout; ``dataset``, ``bag``, ``instruction`` etc. as :class:`RecorderConfig`.
Topics (in, relative names; remap to record another robot or the world model): the task's contract
(:mod:`hiwm.tasks.contract`): one image per task camera (``camera/<name>/color/image_raw`` unless the
task says otherwise), ``robot/state``, ``task/state``, ``task/status``, ``robot/command``, all
reliable keep-all so no step is lost. The dataset gets one video per camera.
Services: ``~/stats`` (std_srvs/Trigger): episodes and frames saved, episodes dropped,
messages per bag topic, as JSON in ``message``.

Each finished episode (``task/status.done``, or a new ``episode_id``) is committed to the
dataset at once; a recorder killed mid-episode leaves the dataset valid without it. The
bag is complete once the node stops cleanly (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import json

from hiwm.comm import InterfaceError, Node, new_message
from hiwm.comm.qos import KEEP_ALL
from hiwm.comm.runner import run_node
from hiwm.data.bag import BagError
from hiwm.data.lerobot import DatasetError
from hiwm.data.record import Recorder, RecorderConfig
from hiwm.tasks import contract, get_task


class RecorderNode:
    def __init__(self, node: Node, cfg: RecorderConfig) -> None:
        self.node = node
        topics = contract.topics(get_task(cfg.task))
        self.recorder = Recorder(cfg, {t: node.resolve(t) for t in topics}, node.logger)
        for topic, msgtype in topics.items():
            node.create_subscription(msgtype, topic, self._callback(topic), KEEP_ALL, raw=True)
        node.create_service("std_srvs/srv/Trigger", "~/stats", self.on_stats)

    def _callback(self, topic: str):
        def on_raw(data: bytes) -> None:
            try:
                self.recorder.on_message(topic, data, self.node.now_ns())
            except (InterfaceError, ValueError) as exc:
                self.node.bad_input.warning(f"recorder.{topic}", f"{self.node.resolve(topic)}: refused message: {exc}")

        return on_raw

    def on_stats(self, _request: object) -> object:
        return new_message("std_srvs/srv/Trigger_Response", success=True, message=json.dumps(self.recorder.stats()))

    def close(self) -> None:
        self.recorder.close()


def wire(node: Node) -> RecorderNode:
    cfg = node.load_config(RecorderConfig)
    try:
        return RecorderNode(node, cfg)
    except (DatasetError, BagError) as exc:
        raise ValueError(str(exc)) from exc


def main(argv: list[str] | None = None) -> int:
    return run_node("recorder", wire, argv)


if __name__ == "__main__":
    raise SystemExit(main())
