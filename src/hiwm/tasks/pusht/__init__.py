"""Push-T as a task description: the numbers its world (gym-pusht), expert and operator use."""

from __future__ import annotations

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

_JOG_PX = 12.0  # the operator's default step per key press
_LEADER_PX_PER_RAD = 325.95  # +-45 degrees of a leader joint span the 512 px table (config/leader/so101_pusht.yaml)

TASK = Task(
    name="pusht",
    description="Push a T-shaped block onto its goal pose with a round agent (2-D, gym-pusht physics).",
    action=ActionSpace(
        names=("agent_x", "agent_y"),
        low=(0.0, 0.0),
        high=(512.0, 512.0),
        units=("px", "px"),
        fps=10.0,
    ),
    observations=Observations(
        # One top-down camera, served where realsense-ros's default camera publishes.
        cameras=(Camera("top", 96, 96, topic="camera/camera/color/image_raw"),),
        proprio=("agent_x", "agent_y"),
        state=("agent_x", "agent_y", "block_x", "block_y", "block_theta"),
    ),
    episode_steps=300,
    success=Success(
        metric="coverage",
        threshold=0.95,
        description="the T block covers more than 95 % of its goal region",
    ),
    jog=JogMap(
        space="action",
        keys=(
            JogKey("w", "agent_y", -_JOG_PX, "up"),  # image rows grow with y: W moves up the screen
            JogKey("s", "agent_y", _JOG_PX, "down"),
            JogKey("a", "agent_x", -_JOG_PX, "left"),
            JogKey("d", "agent_x", _JOG_PX, "right"),
        ),
    ),
    leader_arm=LeaderArmMap(
        robot="so101",
        joints=(
            LeaderJoint("shoulder_pan", "agent_x", _LEADER_PX_PER_RAD, 256.0),
            LeaderJoint("shoulder_lift", "agent_y", _LEADER_PX_PER_RAD, 256.0),
        ),
    ),
    world="hiwm.tasks.pusht.world",
    # The block pose is what a Push-T policy must read off the frame first; a chunk's shape
    # matters, not where it lies on the table.
    policy=PolicyOptions(state_head=True, relative_actions=True),
)


#: The task description of every Push-T episode hiwm writes (expert, recorded, exported).
PUSHT_TASK = "Push the T-shaped block onto the T-shaped target."


def pusht_features(image_size: int = 96, extras: bool = True) -> dict[str, dict]:
    """Features of a Push-T recording: lerobot/pusht's plus intervention, action source and extras."""
    features: dict[str, dict] = {
        "observation.image": {
            "dtype": "video",
            "shape": [image_size, image_size, 3],
            "names": ["height", "width", "channels"],
        },
        "observation.state": {"dtype": "float32", "shape": [2], "names": {"motors": ["x", "y"]}},
        "action": {"dtype": "float32", "shape": [2], "names": {"motors": ["x", "y"]}},
        "intervention": {"dtype": "bool", "shape": [1], "names": None},
        "action.source": {"dtype": "int8", "shape": [1], "names": ["policy", "human", "scripted"]},
    }
    if extras:
        features.update(
            {
                "observation.environment_state": {
                    "dtype": "float32",
                    "shape": [5],
                    "names": ["agent_x", "agent_y", "block_x", "block_y", "block_theta"],
                },
                "next.reward": {"dtype": "float32", "shape": [1], "names": None},
                "next.coverage": {"dtype": "float32", "shape": [1], "names": None},
                "next.success": {"dtype": "bool", "shape": [1], "names": None},
                "next.done": {"dtype": "bool", "shape": [1], "names": None},
            }
        )
    return features
