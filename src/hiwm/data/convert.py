"""Turn a recorded bag of robot traffic into LeRobot v3.0 episodes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hiwm.comm.interfaces import InterfaceError
from hiwm.data.bag import BagError, bag_topics, read_bag
from hiwm.data.episodes import EpisodeAssembler, EpisodeData
from hiwm.data.lerobot import PUSHT_TASK, LeRobotDatasetWriter, pusht_features

log = logging.getLogger("hiwm.data.convert")


@dataclass
class RobotTopics:
    """Fully qualified names of the robot's topics in a recording."""

    image: str = "/camera/image"
    state: str = "/task/state"  # the full world state: agent and block
    status: str = "/task/status"
    command: str = "/robot/command"


@dataclass
class ConvertSummary:
    episodes: int
    frames: int
    dropped: int
    bad_messages: int


def bag_to_dataset(
    bag: str | Path,
    out: str | Path,
    topics: RobotTopics | None = None,
    task: str = "",
    fps: int = 10,
    progress: Callable[[int], None] | None = None,
) -> ConvertSummary:
    """Assemble the episodes recorded in ``bag`` into the dataset at ``out`` (created or appended)."""
    from hiwm.comm.images import image_to_numpy

    topics = topics or RobotTopics()
    meta = bag_topics(bag)["topics"]
    for name in (topics.image, topics.state, topics.status, topics.command):
        if name not in meta:
            raise BagError(f"{bag}: no {name} topic recorded (has {sorted(meta)})")
    first = next(read_bag(bag, [topics.image]), None)
    if first is None:
        raise BagError(f"{bag}: {topics.image} has no messages")
    height, _ = image_to_numpy(first.decode()).shape[:2]
    writer = LeRobotDatasetWriter(out, fps=fps, features=pusht_features(int(height)), flush_every=10)
    counts = {"episodes": 0, "frames": 0, "bad": 0}

    def save(episode: EpisodeData) -> None:
        for frame in episode.frames:
            writer.add_frame(frame)
        writer.save_episode(task=task or PUSHT_TASK)
        counts["episodes"] += 1
        counts["frames"] += len(episode.frames)

    asm = EpisodeAssembler(writer.features, save, fps=fps, logger=log)
    handlers = {
        topics.image: asm.on_image,
        topics.state: asm.on_state,
        topics.status: asm.on_status,
        topics.command: asm.on_command,
    }
    try:
        for i, msg in enumerate(read_bag(bag, handlers)):
            try:
                handlers[msg.topic](msg.decode())
            except InterfaceError as exc:
                counts["bad"] += 1
                if counts["bad"] <= 5:
                    log.warning(f"{bag}: {msg.topic} message at {msg.timestamp}: {exc}; skipped")
            if progress:
                progress(i + 1)
        asm.close()
    except BaseException:
        writer.close()  # the whole episodes converted so far stay
        raise
    writer.close()
    return ConvertSummary(counts["episodes"], counts["frames"], asm.dropped, counts["bad"])
