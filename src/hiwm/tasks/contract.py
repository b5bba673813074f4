"""The robot's topic contract for any task: what one observation and one command look like on the wire.

Every world (a task's physics, the world model, a lab arm behind ``ros2_control_bridge``) publishes
these, and every consumer (policy server, playground, recorder, branch cache) reads them, so nothing
downstream can tell the worlds apart. Names are relative, so namespaces and remaps apply.

  ``<camera topic>``  sensor_msgs/Image rgb8, one per task camera (``Camera.topic``: realsense-ros's
                      ``camera/<name>/color/image_raw`` unless the task says otherwise)
  ``robot/state``     sensor_msgs/JointState, the task's proprio names: positions and velocities
  ``task/state``      sensor_msgs/JointState, the task's state names: the privileged true world state
                      (what a tracker gives in a lab; the scripted expert and ``robot/reset`` use it)
  ``task/status``     hiwm_msgs/TaskStatus: ``coverage`` / ``max_coverage`` carry the task's success
                      metric (``Task.success.metric``) and the episode's best
  ``robot/command``   hiwm_msgs/ActionChunk (in): horizon x the task's ``action_dim`` absolute targets
"""

from __future__ import annotations

# the one header of every message of an observation (re-exported for the worlds and their nodes)
from hiwm.comm.interfaces import header as header
from hiwm.comm.interfaces import stamp_from_ns as stamp_from_ns
from hiwm.tasks.base import Task

ROBOT_STATE = "robot/state"
TASK_STATE = "task/state"
TASK_STATUS = "task/status"
ROBOT_COMMAND = "robot/command"

#: Topic types of the contract's fixed topics (the cameras add one sensor_msgs/Image each).
FIXED_TOPICS = {
    ROBOT_STATE: "sensor_msgs/msg/JointState",
    TASK_STATE: "sensor_msgs/msg/JointState",
    TASK_STATUS: "hiwm_msgs/msg/TaskStatus",
    ROBOT_COMMAND: "hiwm_msgs/msg/ActionChunk",
}


def camera_topics(task: Task) -> dict[str, str]:
    """``{camera name: image topic}`` in the task's camera order."""
    return {c.name: c.topic for c in task.cameras}


def topics(task: Task) -> dict[str, str]:
    """Every topic of the contract and its type: the outputs in publish order (images last), then the command."""
    out = {ROBOT_STATE: FIXED_TOPICS[ROBOT_STATE], TASK_STATE: FIXED_TOPICS[TASK_STATE]}
    out[TASK_STATUS] = FIXED_TOPICS[TASK_STATUS]
    out.update({c.topic: "sensor_msgs/msg/Image" for c in task.cameras})
    out[ROBOT_COMMAND] = FIXED_TOPICS[ROBOT_COMMAND]
    return out


def output_topics(task: Task) -> tuple[str, ...]:
    """The world's outputs in publish order: a reader that sees a step's last image has all of that step."""
    return tuple(t for t in topics(task) if t != ROBOT_COMMAND)
