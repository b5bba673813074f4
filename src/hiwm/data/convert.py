"""Turn a recorded bag of a task's robot traffic into LeRobot v3.0 episodes."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hiwm.comm.interfaces import InterfaceError
from hiwm.data.bag import BagError, bag_topics, read_bag
from hiwm.data.episodes import EpisodeAssembler, EpisodeData
from hiwm.data.lerobot import LeRobotDatasetWriter
from hiwm.tasks import DEFAULT_TASK, contract, get_task
from hiwm.tasks.base import Task
from hiwm.tasks.world import load_world

log = logging.getLogger("hiwm.data.convert")
IMAGE_TYPE = "sensor_msgs/msg/Image"


@dataclass
class RobotTopics:
    """Fully qualified names of the robot's topics in a recording (:meth:`for_task` names a task's)."""

    cameras: dict[str, str] = field(default_factory=dict)  # camera name -> image topic
    state: str = "/" + contract.TASK_STATE  # the full world state (its proprio included)
    status: str = "/" + contract.TASK_STATUS
    command: str = "/" + contract.ROBOT_COMMAND

    @classmethod
    def for_task(cls, task: Task, namespace: str = "") -> RobotTopics:
        """The task's contract topics under ``namespace`` (e.g. ``/rec``; "" the root)."""
        ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
        cameras = {name: f"{ns}/{topic}" for name, topic in contract.camera_topics(task).items()}
        return cls(
            cameras, f"{ns}/{contract.TASK_STATE}", f"{ns}/{contract.TASK_STATUS}", f"{ns}/{contract.ROBOT_COMMAND}"
        )


@dataclass
class ConvertSummary:
    episodes: int
    frames: int
    dropped: int
    bad_messages: int


def _camera_topics(bag: str | Path, task: Task, given: dict[str, str], meta: dict) -> dict[str, str]:
    """The bag's image topic of every task camera: ``given``'s, else its contract topic at the root. A
    one-camera task's bag without that topic but with one image topic (recorded before the camera
    had its contract name, or remapped) is read from that one, which the log says."""
    unknown = sorted(set(given) - {c.name for c in task.cameras})
    if unknown:
        raise BagError(f"no camera {unknown} in task {task.name!r} (cameras {[c.name for c in task.cameras]})")
    cameras = {c.name: given.get(c.name) or "/" + c.topic for c in task.cameras}
    images = sorted(t for t, m in meta.items() if m.get("type") == IMAGE_TYPE)
    missing = [c for c, t in cameras.items() if t not in meta]
    if missing == list(cameras) and len(cameras) == 1 and not given and len(images) == 1:
        log.warning(f"{bag}: no {cameras[missing[0]]} topic; camera {missing[0]!r} read from {images[0]}")
        return {missing[0]: images[0]}
    if missing:
        raise BagError(f"{bag}: camera {missing[0]!r}: no {cameras[missing[0]]} topic recorded (image topics {images})")
    return cameras


def bag_to_dataset(
    bag: str | Path,
    out: str | Path,
    topics: RobotTopics | None = None,
    task: str = DEFAULT_TASK,
    instruction: str = "",
    fps: int = 0,
    progress: Callable[[int], None] | None = None,
) -> ConvertSummary:
    """Assemble the episodes of ``task`` recorded in ``bag`` into the dataset at ``out`` (created or
    appended). ``topics``: the task's contract at the root unless given (an unnamed camera: its
    contract topic); ``instruction``: the task world's unless given; ``fps``: the task's unless given."""
    from hiwm.comm.images import image_to_numpy

    spec = get_task(task)
    world = load_world(spec)
    topics = topics or RobotTopics()
    fps = fps or round(spec.fps)
    meta = bag_topics(bag)["topics"]
    cameras = _camera_topics(bag, spec, topics.cameras, meta)
    for name in (topics.state, topics.status, topics.command):
        if name not in meta:
            raise BagError(f"{bag}: no {name} topic recorded (has {sorted(meta)})")
    sizes = {}
    for camera, topic in cameras.items():
        first = next(read_bag(bag, [topic]), None)
        if first is None:
            raise BagError(f"{bag}: {topic} (camera {camera!r}) has no messages")
        sizes[camera] = image_to_numpy(first.decode()).shape[:2]
    # the frames as recorded: each camera's own size, or all square at one size
    image_size = None
    if any(sizes[c.name] != (c.height, c.width) for c in spec.cameras):
        image_size = next(iter(sizes.values()))[0]
        if any(s != (image_size, image_size) for s in sizes.values()):
            raise BagError(f"{bag}: camera images {sizes}: neither the task's camera sizes nor all square at one size")
    features = world.features(image_size)
    writer = LeRobotDatasetWriter(out, fps=fps, features=features, robot_type=spec.name, flush_every=10)
    counts = {"episodes": 0, "frames": 0, "bad": 0}

    def save(episode: EpisodeData) -> None:
        for frame in episode.frames:
            writer.add_frame(frame)
        writer.save_episode(task=instruction or world.instruction)
        counts["episodes"] += 1
        counts["frames"] += len(episode.frames)

    asm = EpisodeAssembler(world, writer.features, save, fps=fps, logger=log)
    handlers: dict[str, Callable] = {t: functools.partial(asm.on_image, camera=c) for c, t in cameras.items()}
    handlers.update({topics.state: asm.on_state, topics.status: asm.on_status, topics.command: asm.on_command})
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
