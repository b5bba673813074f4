"""The task registry: every task hiwm knows, by name, as a :class:`~hiwm.tasks.base.Task`.

Descriptions are pure data: importing this module loads no physics engine. Worlds that speak
:class:`~hiwm.tasks.joint_env.JointEnv` (joint-position control, a lab arm's interface) are imported
on demand by :func:`make_joint_env`.
"""

from __future__ import annotations

import importlib
from typing import Any

from hiwm.tasks import pusht, so101
from hiwm.tasks.base import (
    ActionSpace,
    Camera,
    JogKey,
    JogMap,
    LeaderArmMap,
    LeaderJoint,
    LoopOptions,
    Observations,
    PolicyOptions,
    Success,
    Task,
)

_TASKS: dict[str, Task] = {t.name: t for t in (pusht.TASK, so101.TASK)}
#: The task a node serves unless told otherwise.
DEFAULT_TASK = pusht.TASK.name
#: Task name -> ``module:Class`` of its JointEnv world.
_JOINT_ENVS = {so101.TASK.name: "hiwm.tasks.so101.env:So101PickEnv"}
#: The joint-space task an arm robot node simulates unless told otherwise.
DEFAULT_JOINT_TASK = so101.TASK.name

__all__ = [
    "DEFAULT_JOINT_TASK",
    "DEFAULT_TASK",
    "ActionSpace",
    "Camera",
    "JogKey",
    "JogMap",
    "LeaderArmMap",
    "LeaderJoint",
    "LoopOptions",
    "Observations",
    "PolicyOptions",
    "Success",
    "Task",
    "get_task",
    "joint_env_tasks",
    "make_joint_env",
    "task_names",
]


def task_names() -> tuple[str, ...]:
    """The registered tasks' names, sorted."""
    return tuple(sorted(_TASKS))


def get_task(name: str) -> Task:
    """The task called ``name``; ValueError naming the known tasks otherwise."""
    try:
        return _TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown task {name!r}; tasks are {', '.join(task_names())}") from None


def joint_env_tasks() -> tuple[str, ...]:
    """The tasks whose world is a joint-position :class:`~hiwm.tasks.joint_env.JointEnv`, sorted."""
    return tuple(sorted(_JOINT_ENVS))


def make_joint_env(name: str, **kwargs: Any) -> Any:
    """A new JointEnv world of task ``name`` (keyword arguments go to its class); ValueError otherwise."""
    get_task(name)
    if name not in _JOINT_ENVS:
        raise ValueError(f"task {name!r} has no joint-position world; those that do: {', '.join(joint_env_tasks())}")
    module, cls = _JOINT_ENVS[name].split(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)
