"""Record live robot traffic: whole episodes into a LeRobot v3 dataset, raw messages into an MCAP bag.

Free of middleware: the recorder node hands each received payload (CDR bytes) to
:meth:`Recorder.on_message`. A payload that does not decode is refused before it reaches
either output, so the bag stays readable by others' tools.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from hiwm.comm.interfaces import deserialize
from hiwm.data.bag import BagWriter
from hiwm.data.episodes import EpisodeAssembler, EpisodeData
from hiwm.data.lerobot import LeRobotDatasetWriter
from hiwm.tasks import DEFAULT_TASK, contract, get_task
from hiwm.tasks.world import load_world


@dataclass
class RecorderConfig:
    dataset: str = ""  # LeRobot v3 dataset to create or append to; "" records none
    bag: str = ""  # rosbag2 MCAP folder to create ("{time}" expands to a timestamp); "" records none
    task: str = DEFAULT_TASK  # the registered task (hiwm tasks): its topics and its datasets' layout
    image_size: int = 0  # square frames of this size; 0: each camera's own size
    fps: int = 0  # the dataset's frame rate; 0: the task's control rate
    instruction: str = ""  # the episodes' language task in the dataset; "": the task world's
    keep_truncated: bool = True  # keep episodes cut short by a reset (they end without done)
    min_frames: int = 1

    def __post_init__(self) -> None:
        if not self.dataset and not self.bag:
            raise ValueError("set dataset and/or bag: the recorder has nowhere to write")
        get_task(self.task)  # ValueError naming the known tasks
        if self.fps < 0 or (self.image_size and self.image_size < 8):
            raise ValueError(f"fps must be >= 0 and image_size 0 or >= 8, got {self.fps}, {self.image_size}")

    def bag_path(self) -> str:
        return self.bag.replace("{time}", time.strftime("%Y%m%d-%H%M%S")) if self.bag else ""


class Recorder:
    """Feeds the episode assembler and the bag; every finished episode is committed at once.

    ``topics`` maps the task's contract topics (relative names, :func:`hiwm.tasks.contract.topics`)
    to the names written in the bag (the node's resolved names).
    """

    def __init__(self, cfg: RecorderConfig, topics: dict[str, str] | None = None, log: logging.Logger | None = None):
        self.cfg = cfg
        self.log = log or logging.getLogger("hiwm.recorder")
        task = get_task(cfg.task)
        self.world = load_world(task)
        self.contract = contract.topics(task)
        self.topics = topics or {t: "/" + t for t in self.contract}
        self.fps = cfg.fps or round(task.fps)
        self.instruction = cfg.instruction or self.world.instruction
        self.writer: LeRobotDatasetWriter | None = None
        self.bag: BagWriter | None = None
        self.episodes = self.frames = 0
        features = self.world.features(cfg.image_size or None)
        if cfg.dataset:
            # flush every episode: a killed recorder loses at most the episode in progress
            self.writer = LeRobotDatasetWriter(
                cfg.dataset, fps=self.fps, features=features, robot_type=task.name, flush_every=1
            )
            features = self.writer.features
        if cfg.bag:
            self.bag = BagWriter(Path(cfg.bag_path()))
            for rel, msgtype in self.contract.items():
                self.bag.add_topic(self.topics[rel], msgtype)
        self.assembler = EpisodeAssembler(
            self.world,
            features,
            self._save,
            fps=self.fps,
            keep_truncated=cfg.keep_truncated,
            min_frames=cfg.min_frames,
            logger=self.log,
        )
        self._handlers = {
            topic: functools.partial(self.assembler.on_image, camera=camera)
            for camera, topic in contract.camera_topics(task).items()
        }
        self._handlers.update(
            {
                contract.TASK_STATE: self.assembler.on_state,
                contract.TASK_STATUS: self.assembler.on_status,
                contract.ROBOT_COMMAND: self.assembler.on_command,
            }
        )

    def on_message(self, topic: str, data: bytes, stamp_ns: int) -> None:
        """One payload received on the contract topic ``topic`` (relative name) at ``stamp_ns``.

        Raises :class:`hiwm.comm.InterfaceError` for a payload that does not decode or does
        not fit the contract (wrong image size, say); nothing is written for it.
        """
        msg = deserialize(data, self.contract[topic])
        handler = self._handlers.get(topic)
        if handler is not None and self.writer is not None:
            handler(msg)
        if self.bag is not None:
            self.bag.write(self.topics[topic], data, stamp_ns)

    def _save(self, episode: EpisodeData) -> None:
        assert self.writer is not None
        for frame in episode.frames:
            self.writer.add_frame(frame)
        index = self.writer.save_episode(task=self.instruction)
        self.episodes += 1
        self.frames += len(episode.frames)
        ending = "done" if episode.complete else "cut short by a reset"
        self.log.info(f"episode {episode.episode_id} ({ending}) saved as #{index}: {len(episode.frames)} frames")

    def stats(self) -> dict:
        return {
            "episodes": self.episodes,
            "frames": self.frames,
            "dropped": self.assembler.dropped,
            "bag_messages": dict(self.bag.counts) if self.bag else {},
            "dataset": self.cfg.dataset,
            "bag": str(self.bag.path) if self.bag else "",
        }

    def close(self) -> None:
        """End of recording: an unfinished episode is dropped; the dataset and bag are closed."""
        self.assembler.close()
        if self.writer is not None:
            self.writer.close()
        if self.bag is not None:
            self.bag.close()
        self.log.info(f"recorder closed: {json.dumps(self.stats())}")
