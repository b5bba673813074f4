"""World-model graph: a learned world of a task behind the robot's topics, and a monitor of its camera.

ros2 launch hiwm world_model.launch.py checkpoint:=/path/to/ckpt        # with ROS 2
hiwm launch world_model checkpoint:=/path/to/ckpt clock:=realtime       # without
"""

from hiwm.launch import Arg, ArgRef, Graph, NodeSpec, to_launch_description
from hiwm.tasks import DEFAULT_TASK, task_names

TASK = ArgRef("task")

GRAPH = Graph(
    name="world_model",
    description="world_model answers robot/command with generated frames on the task's camera topics, "
    "task state and snapshot handles",
    args=[
        Arg("task", DEFAULT_TASK, "the task of the world model (hiwm tasks)", task_names()),
        Arg("checkpoint", "", "checkpoint directory from `hiwm train world-model` (empty: the task's shipped one)"),
        Arg(
            "clock",
            "realtime",
            "realtime (rate_hz ticks) or lockstep (one step per command row)",
            choices=("realtime", "lockstep"),
        ),
        Arg("rate_hz", 10.0, "control rate in real time"),
        Arg("namespace", "", "namespace of the graph (empty: the root)"),
    ],
    nodes=[
        NodeSpec(
            "world_model",
            name="world_model",
            namespace=ArgRef("namespace"),
            parameters={
                "task": TASK,
                "checkpoint": ArgRef("checkpoint"),
                "clock": ArgRef("clock"),
                "rate_hz": ArgRef("rate_hz"),
            },
            required=True,
        ),
        NodeSpec(
            "image_monitor",
            name="camera_monitor",
            namespace=ArgRef("namespace"),
            parameters={"task": TASK, "qos": "default", "report_period_s": 5.0},  # the task's first camera
        ),
    ],
)


def generate_launch_description():
    return to_launch_description(GRAPH)
