"""Jog keys -> actions for both tasks: Push-T's pixel steps, the arm's end effector through IK on real
MuJoCo physics, and the arbiter's hand-over rate limit on N-D actions."""

from __future__ import annotations

import numpy as np
import pytest

from hiwm.tasks import get_task
from hiwm.tasks.jog import Jogger
from hiwm.teleop.arbiter import CORRECTING, Arbiter, ArbiterConfig

EE_KEYS = {"w": (0, 1), "s": (0, -1), "a": (1, 1), "d": (1, -1), "e": (2, 1), "c": (2, -1)}  # key: axis, sign


def test_pusht_keys_step_pixels_as_before():
    jog = Jogger(get_task("pusht"))
    assert jog.keys == ("w", "s", "a", "d") and jog.dim == 2
    start = np.array([100.0, 100.0])
    assert jog.jog(start, ["d"]).tolist() == [112.0, 100.0]
    assert jog.jog(start, ["w"]).tolist() == [100.0, 88.0]  # up the screen: rows grow with y
    assert jog.jog(start, ["w", "d"]).tolist() == [112.0, 88.0]  # held together: a diagonal
    assert jog.jog(start, ["a", "d"]).tolist() == [100.0, 100.0]
    assert jog.jog(np.array([508.0, 4.0]), ["d", "w"]).tolist() == [512.0, 0.0]  # the table's edge
    assert jog.jog(start, []) is None
    assert Jogger(get_task("pusht"), scale=0.5).jog(start, ["s"]).tolist() == [100.0, 106.0]
    assert jog.hold(np.array([3.0, 4.0])).tolist() == [3.0, 4.0]
    assert [(k["key"], k["label"], k["unit"]) for k in jog.help()][:2] == [("w", "up", "px"), ("s", "down", "px")]
    with pytest.raises(ValueError, match="'x' is not a jog key of task pusht"):
        jog.jog(start, ["x"])
    with pytest.raises(ValueError, match="2 finite numbers"):
        jog.jog(np.array([np.nan, 1.0]), ["w"])
    with pytest.raises(ValueError, match="scale"):
        Jogger(get_task("pusht"), scale=0.0)


@pytest.fixture(scope="module")
def arm():
    """The arm task's jogger and its world (no rendering), with a way to measure the grasp point."""
    from lerobot_env_so101.ik_control import control_point
    from lerobot_env_so101.mujoco_env import grasp_point_offset

    from hiwm.tasks.so101.env import So101PickEnv
    from hiwm.tasks.so101.scene import SITE

    env = So101PickEnv(render=False, seed=0)
    site = env.model.site(SITE).id
    offset = grasp_point_offset(env.model, site)
    return Jogger(get_task("so101_pick")), env, lambda: control_point(env.data, site, offset).copy()


def settle(env, action: np.ndarray, steps: int = 8):
    for _ in range(steps):
        obs = env.step(action)
    return obs


@pytest.mark.parametrize("key", list(EE_KEYS))
def test_arm_key_moves_the_end_effector_by_about_its_step(arm, key):
    jog, env, grasp_point = arm
    obs = env.reset(seed=3)
    action = jog.hold(obs.joints)  # a first key press starts from where the arm is
    settle(env, action)
    start = grasp_point()
    axis, sign = EE_KEYS[key]
    for _ in range(3):
        action = jog.jog(action, [key])
    assert action.shape == (6,) and np.all(np.isfinite(action))
    settle(env, action)
    moved = grasp_point() - start
    expected = np.zeros(3)
    expected[axis] = sign * 3 * 0.01  # three presses of 1 cm
    assert np.linalg.norm(moved - expected) < 0.005, (key, moved)  # the real servos, under gravity: 1-3 mm off


def test_arm_gripper_keys_open_and_close_within_its_limits(arm):
    jog, env, _ = arm
    task = jog.task
    obs = env.reset(seed=1)
    action = jog.hold(obs.joints)
    opened = jog.jog(action, ["u"])
    assert opened[5] == pytest.approx(action[5] + 0.15) and np.array_equal(opened[:5], action[:5])
    assert jog.jog(opened, ["o"])[5] == pytest.approx(action[5])
    for _ in range(30):
        opened = jog.jog(opened, ["u"])
    assert opened[5] == task.action.high[5]  # held at the servo's limit
    obs = settle(env, opened, 10)
    assert obs.joints[5] > action[5] + 0.5  # the jaw really opened
    closed = opened
    for _ in range(30):
        closed = jog.jog(closed, ["o"])
    assert closed[5] == task.action.low[5]
    assert settle(env, closed, 10).joints[5] < obs.joints[5] - 0.5


def test_arm_jogging_out_of_reach_stays_within_the_joint_limits(arm):
    jog, env, _ = arm
    low, high = np.asarray(jog.task.action.low), np.asarray(jog.task.action.high)
    for keys in (["w"], ["c", "s"], ["a", "e"], ["d"]):
        obs = env.reset(seed=2)
        action = jog.hold(obs.joints)
        for _ in range(80):  # 80 cm: far beyond the arm's reach
            action = jog.jog(action, keys)
            assert np.all(np.isfinite(action)) and np.all(action >= low) and np.all(action <= high), (keys, action)
        obs = env.step(action)  # the world accepts every one of them (it refuses out-of-limit targets)
        assert np.all(np.isfinite(obs.joints))


def test_arbiter_rate_limits_handover_on_n_d_actions():
    task = get_task("so101_pick")
    arb = Arbiter(ArbiterConfig(task=task.name, blend_steps=3, max_step=0.1))
    span = np.asarray(task.action.high) - np.asarray(task.action.low)
    here = np.zeros(6)
    arb.on_agent(here)
    far = np.array([[1.0, -1.0, 1.0, 0.0, 0.0, 0.5]])
    emit, change = arb.on_operator(far, "leader")
    assert change.phase == CORRECTING and emit.rows.shape == (1, 6)
    assert np.linalg.norm((emit.rows[0] - here) / span) == pytest.approx(0.1)  # no jump at hand-over
    direction = far[0] / span
    moved = emit.rows[0] / span
    assert np.allclose(moved / np.linalg.norm(moved), direction / np.linalg.norm(direction))  # toward it
    rows = arb.on_operator(np.repeat(far, 4, axis=0), "leader")[0].rows
    steps = np.diff(np.vstack([emit.rows, rows]), axis=0)[:2] / span
    assert np.all(np.linalg.norm(steps, axis=1) <= 0.1 + 1e-9)
    assert np.array_equal(rows[-1], far[0])  # blending over, the target is reached
    beyond = arb.on_operator(np.array([[9.0, -9.0, 0.0, 0.0, 0.0, -9.0]]), "leader")[0].rows[0]
    assert np.array_equal(beyond, [task.action.high[0], task.action.low[1], 0.0, 0.0, 0.0, task.action.low[5]])
    # the default task's 2-D actions, clipped to its limits
    pusht = Arbiter(ArbiterConfig(blend_steps=0))
    assert pusht.on_policy(np.array([[600.0, -5.0]])).rows.tolist() == [[512.0, 0.0]]
