"""Robot adapters: kinematic chains, the ros2_control bridge core, a lab arm's controller interface.

Every robot core (a task's simulated robot, the world model's, the bridge, the arm) refuses a command with
:class:`~hiwm.tasks.chunks.BadCommand`, re-exported here."""

from hiwm.tasks.chunks import BadCommand

__all__ = ["BadCommand"]
