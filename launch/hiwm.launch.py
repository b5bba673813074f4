"""One policy, two worlds: the Hi-WM graph with the world model or the real robot behind the same topics.

ros2 launch hiwm hiwm.launch.py world:=model world_model:=runs/wm policy:=runs/act       # with ROS 2
hiwm launch hiwm world:=real robot:=sim policy:=runs/act                               # without
hiwm launch hiwm world:=real robot:=so101 task:=so101_pick policy:=runs/arm_act
hiwm launch hiwm world:=model task:=so101_pick       # the models hiwm ships for the task (hiwm models)

``task`` (a registered task, ``hiwm tasks``; default the default task) goes to every node: the world
serves the task's topic contract (hiwm.tasks.contract: one image topic per task camera, realsense-ros's
``camera/<name>/color/image_raw``; ``robot/state`` with its proprio; ``robot/command`` chunks of its
action_dim), and the policy server, teleop page, recorder and branch cache read it. They are the same
nodes with the same parameters in every world; only the observation and actuation side changes:

  world:=model                 world_model (generated frames, probe state, snapshot handles)
  world:=real robot:=sim       sim_robot: the task's own physics behind a robot's topics (Push-T: gym-pusht;
                               so101_pick: MuJoCo)
  world:=real robot:=so101     arm_robot (the SO-101 arm on MuJoCo with a lab arm's topics: /joint_states,
                               the controllers' command topics, its RealSense-named camera) driven by
                               ros2_control_bridge (config/ros2_control/bridge_so101.yaml). It is the
                               so101_pick task's arm: it needs task:=so101_pick (the launch refuses otherwise,
                               before anything starts, so no node serves a task the arm is not)
  world:=real robot:=ros2_control
                               realsense_camera (on realsense-ros's names, camera/<camera_name>/color/image_raw:
                               camera_name:=camera by default, Push-T's camera topic; camera_name:=front for
                               so101_pick's; camera:=external uses realsense-ros instead) and ros2_control_bridge
                               (config/ros2_control/bridge_arm3.yaml:
                               a 3-joint arm taking x, y actions; robot/command -> joint_trajectory_controller,
                               /joint_states -> robot/state). The bridge refuses to start for a task whose
                               action space is not its own; copy and edit the file for your arm
"""

from hiwm.launch import AllOf, Arg, ArgRef, Graph, IfArg, NodeSpec, Requires, to_launch_description
from hiwm.tasks import DEFAULT_TASK, task_names

NS = ArgRef("namespace")
TASK = ArgRef("task")
REAL = IfArg("world", "real")
SO101 = AllOf(REAL, IfArg("robot", "so101"))

GRAPH = Graph(
    name="hiwm",
    description="policy_server -> arbiter <- teleop_web; the world (model or real) on robot/command; "
    "recorder and branch_cache watching",
    args=[
        Arg("world", "model", "model: the learned world model; real: the robot", ("model", "real")),
        Arg("task", DEFAULT_TASK, "the task every node serves (hiwm tasks)", task_names()),
        Arg(
            "robot",
            "sim",
            "the real robot: the task's own physics, the SO-101 arm on MuJoCo (task:=so101_pick),"
            " or an arm under ros2_control",
            ("sim", "so101", "ros2_control"),
        ),
        Arg("policy", "", "policy checkpoint folder or module:Class of an outside policy (empty: the shipped ACT)"),
        Arg("world_model", "", "world-model checkpoint folder (world:=model); empty: the task's shipped one"),
        Arg(
            "clock",
            "realtime",
            "realtime: control ticks at 10 Hz; lockstep: one step per command",
            ("realtime", "lockstep"),
        ),
        Arg("seed", -1, "first episode's seed (< 0: random)"),
        Arg("namespace", "", "namespace of the whole graph (empty: the root)"),
        Arg("initial_phase", "autonomous", "arbiter phase at start", ("autonomous", "paused", "correcting")),
        Arg("teleop", True, "serve the browser playground"),
        Arg("port", 8765, "playground port"),
        Arg("host", "127.0.0.1", "playground address; beyond loopback it needs a token (token_file)"),
        Arg("token_file", "", "file holding the playground's token (else $HIWM_TELEOP_TOKEN); never the token itself"),
        Arg("record", True, "record episodes (LeRobot v3) and traffic (MCAP)"),
        Arg("dataset", "data/hiwm-episodes", "dataset the recorder creates or appends to"),
        Arg("bag", "bags/hiwm-{time}", "MCAP folder the recorder creates"),
        Arg("db", "branch_cache.db", "branch cache store (SQLite)"),
        Arg(
            "camera",
            "hiwm",
            "robot:=ros2_control: our RealSense node, or external (realsense-ros)",
            ("hiwm", "external"),
        ),
        Arg(
            "camera_name",
            "camera",
            "robot:=ros2_control, camera:=hiwm: realsense-ros's camera_name (the task camera's topic)",
        ),
        Arg("use_status", True, "policy_server joins task/status (false for a real arm without a success detector)"),
    ],
    nodes=[
        # the world: exactly one of these runs
        NodeSpec(
            "world_model",
            name="world_model",
            namespace=NS,
            parameters={
                "task": TASK,
                "checkpoint": ArgRef("world_model"),
                "clock": ArgRef("clock"),
                "seed": ArgRef("seed"),
            },
            condition=IfArg("world", "model"),
            required=True,
        ),
        NodeSpec(
            "sim_robot",
            name="sim_robot",
            namespace=NS,
            parameters={"task": TASK, "clock": ArgRef("clock"), "seed": ArgRef("seed")},
            condition=AllOf(REAL, IfArg("robot", "sim")),
            required=True,
        ),
        NodeSpec(
            "realsense_camera",
            name="realsense_camera",
            namespace=NS,
            parameters={"camera_name": ArgRef("camera_name")},
            condition=AllOf(REAL, IfArg("robot", "ros2_control"), IfArg("camera", "hiwm")),
            required=True,
        ),
        NodeSpec(
            "ros2_control_bridge",
            name="ros2_control_bridge",
            namespace=NS,
            parameters={"task": TASK},
            param_files=["config/ros2_control/bridge_arm3.yaml"],  # the arm: copy and edit for yours
            condition=AllOf(REAL, IfArg("robot", "ros2_control")),
            required=True,
        ),
        NodeSpec(
            "arm_robot",
            name="arm_robot",
            namespace=NS,
            parameters={"task": TASK, "clock": ArgRef("clock"), "seed": ArgRef("seed")},
            condition=SO101,
            required=True,
        ),
        NodeSpec(
            "ros2_control_bridge",
            name="ros2_control_bridge",
            namespace=NS,
            parameters={"task": TASK},
            param_files=["config/ros2_control/bridge_so101.yaml"],
            condition=SO101,
            required=True,
        ),
        # the same in every world
        NodeSpec(
            "policy_server",
            name="policy_server",
            namespace=NS,
            parameters={"task": TASK, "policy": ArgRef("policy"), "use_status": ArgRef("use_status")},
            required=True,
        ),
        NodeSpec(
            "arbiter",
            name="arbiter",
            namespace=NS,
            parameters={"task": TASK, "initial_phase": ArgRef("initial_phase")},
        ),
        NodeSpec(
            "teleop_web",
            name="teleop_web",
            namespace=NS,
            parameters={
                "task": TASK,
                "port": ArgRef("port"),
                "host": ArgRef("host"),
                "token_file": ArgRef("token_file"),
            },
            condition=IfArg("teleop", True),
        ),
        NodeSpec(
            "recorder",
            name="recorder",
            namespace=NS,
            parameters={"task": TASK, "dataset": ArgRef("dataset"), "bag": ArgRef("bag")},
            condition=IfArg("record", True),
        ),
        NodeSpec("branch_cache", name="branch_cache", namespace=NS, parameters={"task": TASK, "db": ArgRef("db")}),
    ],
    requires=[
        Requires(
            SO101,
            IfArg("task", "so101_pick"),
            "the SO-101 arm on MuJoCo serves the so101_pick task only; add task:=so101_pick",
        )
    ],
)


def generate_launch_description():
    return to_launch_description(GRAPH)
