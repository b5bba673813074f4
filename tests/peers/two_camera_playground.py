"""Test peer: teleop_web serving a made-up task with two cameras and a 3-D action space.

Its second camera's name and one key's label hold HTML: the page must show them as text.
"""

from __future__ import annotations

from hiwm.comm import Node
from hiwm.comm.runner import run_node
from hiwm.nodes.teleop_web import TeleopWeb, TeleopWebConfig
from hiwm.tasks import ActionSpace, Camera, JogKey, JogMap, Observations, Success, Task

NAMES = ("slide", "lift", "tilt")
OVERHEAD = "overhead<img src=x onerror=window.pwnedCamera=1>"
RAISE = "raise<img src=x onerror=window.pwnedKey=1>"
TASK = Task(
    name="two_cameras",
    description="A made-up 3-D task seen by two cameras of different sizes.",
    action=ActionSpace(names=NAMES, low=(-1.0, 0.0, -0.5), high=(1.0, 2.0, 0.5), units=("m", "m", "rad"), fps=10.0),
    observations=Observations(
        cameras=(Camera("wrist", 24, 32), Camera(OVERHEAD, 16, 16, topic="cams/overhead/image")),
        proprio=NAMES,
        state=NAMES,
    ),
    episode_steps=50,
    success=Success("height", 1.5, "lifted above 1.5 m"),
    jog=JogMap(
        "action",
        (
            JogKey("j", "slide", -0.1, "slide left"),
            JogKey("l", "slide", 0.1, "slide right"),
            JogKey("i", "lift", 0.25, RAISE),
            JogKey("k", "lift", -0.25, "lower"),
        ),
    ),
)


def wire(node: Node) -> TeleopWeb:
    return TeleopWeb(node, node.load_config(TeleopWebConfig), task=TASK)


if __name__ == "__main__":
    raise SystemExit(run_node("teleop_web", wire))
