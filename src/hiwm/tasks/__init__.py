"""The task registry: every task hiwm knows, by name, as a :class:`~hiwm.tasks.base.Task`.

Descriptions are pure data: importing this module loads no physics engine.
"""

from __future__ import annotations

from hiwm.tasks import pusht, so101
from hiwm.tasks.base import (
    ActionSpace,
    Camera,
    JogKey,
    JogMap,
    LeaderArmMap,
    LeaderJoint,
    Observations,
    PolicyOptions,
    Success,
    Task,
)

_TASKS: dict[str, Task] = {t.name: t for t in (pusht.TASK, so101.TASK)}
#: The task of commands and configs that name none.
DEFAULT_TASK = pusht.TASK.name

__all__ = [
    "DEFAULT_TASK",
    "ActionSpace",
    "Camera",
    "JogKey",
    "JogMap",
    "LeaderArmMap",
    "LeaderJoint",
    "Observations",
    "PolicyOptions",
    "Success",
    "Task",
    "get_task",
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
