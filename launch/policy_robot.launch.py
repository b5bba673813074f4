"""A policy driving a task's simulated robot: policy_server's action chunks go straight to robot/command.

ros2 launch hiwm policy_robot.launch.py policy:=runs/act                         # with ROS 2
hiwm launch policy_robot policy:=runs/act seed:=3                                # without
hiwm launch policy_robot task:=so101_pick policy:=runs/arm_act
"""

from hiwm.launch import Arg, ArgRef, Graph, NodeSpec, to_launch_description
from hiwm.tasks import DEFAULT_TASK, task_names

TASK = ArgRef("task")

GRAPH = Graph(
    name="policy_robot",
    description="sim_robot + policy_server on one task (policy/action remapped to robot/command)",
    args=[
        Arg("task", DEFAULT_TASK, "the task simulated and served (hiwm tasks)", task_names()),
        Arg("policy", "", "checkpoint folder, or module:Class of an outside policy"),
        Arg("clock", "realtime", "robot clock", choices=("realtime", "lockstep")),
        Arg("seed", 0, "seed of the robot's first episode"),
        Arg("execute_steps", 0, "rows of each chunk to execute before the next query (0: the whole chunk)"),
        Arg("namespace", "", "namespace of both nodes (empty: the root)"),
    ],
    nodes=[
        NodeSpec(
            "sim_robot",
            name="sim_robot",
            namespace=ArgRef("namespace"),
            parameters={"task": TASK, "clock": ArgRef("clock"), "seed": ArgRef("seed")},
            required=True,
        ),
        NodeSpec(
            "policy_server",
            name="policy_server",
            namespace=ArgRef("namespace"),
            parameters={"task": TASK, "policy": ArgRef("policy"), "execute_steps": ArgRef("execute_steps")},
            remappings={"policy/action": "robot/command"},
            required=True,
        ),
    ],
)


def generate_launch_description():
    return to_launch_description(GRAPH)
