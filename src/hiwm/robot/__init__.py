"""Robot adapters: kinematic chains, the ros2_control bridge core, a lab arm's controller interface, and
any task's simulated robot (:mod:`hiwm.robot.sim`).

Every robot core (the simulated robot, the world model's, the bridge, the arm) refuses a command with
:class:`~hiwm.tasks.chunks.BadCommand`, re-exported here."""

from hiwm.tasks.chunks import BadCommand

__all__ = ["BadCommand"]
