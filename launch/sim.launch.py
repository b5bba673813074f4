"""A task's simulated robot (its own physics behind a robot's topics), optionally with the recorder.

ros2 launch hiwm sim.launch.py task:=pusht clock:=lockstep record:=true dataset:=data/session
hiwm launch sim task:=so101_pick clock:=lockstep record:=true dataset:=data/session
"""

from hiwm.launch import Arg, ArgRef, Graph, IfArg, NodeSpec, to_launch_description
from hiwm.tasks import DEFAULT_TASK, task_names

NS = ArgRef("namespace")
TASK = ArgRef("task")

GRAPH = Graph(
    name="sim",
    description="sim_robot serves the task's topic contract (its camera topics, robot/state, task/state, "
    "task/status, robot/command) and robot/reset; recorder (record:=true) writes a LeRobot v3 dataset and an MCAP bag",
    args=[
        Arg("task", DEFAULT_TASK, "the task simulated (hiwm tasks)", task_names()),
        Arg("namespace", "", "namespace of the robot and recorder (empty: the root)"),
        Arg(
            "clock",
            "realtime",
            "realtime: control ticks at rate_hz; lockstep: one step per command",
            ["realtime", "lockstep"],
        ),
        Arg("rate_hz", 0.0, "control rate in real time (0: the task's)"),
        Arg("image_size", 0, "camera image size in pixels (square; 0: the task camera's)"),
        Arg("seed", -1, "first episode's seed (< 0: random)"),
        Arg("record", False, "also run the recorder"),
        Arg("dataset", "data/recorded", "LeRobot v3 dataset the recorder creates or appends to"),
        Arg("bag", "bags/sim-{time}", "rosbag2 MCAP folder the recorder creates ({time}: a timestamp)"),
    ],
    nodes=[
        NodeSpec(
            "sim_robot",
            name="sim_robot",
            namespace=NS,
            parameters={
                "task": TASK,
                "clock": ArgRef("clock"),
                "rate_hz": ArgRef("rate_hz"),
                "image_size": ArgRef("image_size"),
                "seed": ArgRef("seed"),
            },
            required=True,
        ),
        NodeSpec(
            "recorder",
            name="recorder",
            namespace=NS,
            parameters={
                "task": TASK,
                "dataset": ArgRef("dataset"),
                "bag": ArgRef("bag"),
                "image_size": ArgRef("image_size"),
            },
            condition=IfArg("record", "true"),
        ),
    ],
)


def generate_launch_description():
    return to_launch_description(GRAPH)
