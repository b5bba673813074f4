"""The SO-101 pick world on real MuJoCo physics: limits, seeding, exact restore, bad actions, camera, expert."""

from __future__ import annotations

import numpy as np
import pytest

from hiwm.tasks import get_task
from hiwm.tasks.so101.env import MAX_STEPS, So101PickEnv
from hiwm.tasks.so101.expert import ArmExpert, ArmExpertConfig

TASK = get_task("so101_pick")


@pytest.fixture(scope="module")
def env() -> So101PickEnv:
    e = So101PickEnv(render=False)
    yield e
    e.close()


def rollout(env: So101PickEnv, seed: int, config: ArmExpertConfig | None = None) -> tuple[bool, int, np.ndarray]:
    obs = env.reset(seed=seed)
    expert = ArmExpert(config, seed=seed)
    actions = []
    while not obs.done:
        actions.append(expert.act(obs.state))
        obs = env.step(actions[-1])
    return obs.success, obs.step, np.array(actions)


def test_task_description_matches_the_model(env):
    names = [env.model.actuator(i).name for i in range(env.model.nu)]
    assert names == list(TASK.action.names)
    np.testing.assert_allclose(env.low, TASK.action.low, atol=1e-5)
    np.testing.assert_allclose(env.high, TASK.action.high, atol=1e-5)
    assert env.substeps * env.model.opt.timestep == pytest.approx(1.0 / TASK.fps)
    assert TASK.episode_steps == MAX_STEPS
    obs = env.reset(seed=0)
    assert obs.joints.shape == (TASK.proprio_dim,) and obs.state.shape == (len(TASK.observations.state),)


def test_reset_is_deterministic_by_seed_and_seeds_differ(env):
    a = env.reset(seed=7).state
    b = So101PickEnv(render=False).reset(seed=7).state
    np.testing.assert_array_equal(a, b)
    c = env.reset(seed=8).state
    assert not np.allclose(a[6:8], c[6:8])  # the cube starts elsewhere
    assert (env.last.step, env.last.done, env.last.success) == (0, False, False)
    assert env.last.lift == pytest.approx(0.0, abs=1e-9)


def test_get_state_set_state_continue_bit_for_bit(env):
    obs = env.reset(seed=3)
    expert = ArmExpert(seed=0)
    for _ in range(8):  # mid-reach: the arm moving, the cube about to be touched
        obs = env.step(expert.act(obs.state))
    saved = env.get_state()
    actions = [expert.act(obs.state)]
    trajectory = []
    for _ in range(10):
        obs = env.step(actions[-1])
        trajectory.append(env.get_state())
        actions.append(expert.act(obs.state))
    other = So101PickEnv(render=False)
    for target in (env, other):  # the same env rewound, and a fresh one
        restored = target.set_state(saved)
        assert restored.step == 8
        np.testing.assert_array_equal(target.get_state(), saved)
        for action, expected in zip(actions, trajectory, strict=False):
            target.step(action)
            np.testing.assert_array_equal(target.get_state(), expected)


@pytest.mark.probe("set_state with a wrong-length, NaN or fractional-step vector", "ValueError, state unchanged")
def test_bad_state_is_refused_and_changes_nothing(env):
    env.reset(seed=1)
    before = env.get_state()
    for bad in (before[:-1], np.full_like(before, np.nan), np.concatenate([[2.5], before[1:]]), "x"):
        with pytest.raises(ValueError):
            env.set_state(bad)
        np.testing.assert_array_equal(env.get_state(), before)


@pytest.mark.probe("NaN, inf, wrong-length, non-numeric and out-of-limit joint targets", "ValueError, nothing moves")
def test_bad_actions_are_refused_with_a_clear_error(env):
    obs = env.reset(seed=2)
    before = env.get_state()
    good = obs.joints.copy()
    cases = {
        "finite": np.array([np.nan, *good[1:]]),
        "finite ": np.array([*good[:5], np.inf]),
        "6 values": good[:5],
        "6 values ": np.append(good, 0.0),
        "joint targets": "open",
        "elbow_flex=2.0000 not in": np.array([*good[:2], 2.0, *good[3:]]),
        "gripper=-1.0000 not in": np.array([*good[:5], -1.0]),
    }
    for message, action in cases.items():
        with pytest.raises(ValueError, match=message.strip()):
            env.step(action)
        np.testing.assert_array_equal(env.get_state(), before)
    env.step(np.array(TASK.action.high, dtype=np.float32))  # a target at a limit, rounded to float32, is fine


def test_camera_image_shape_and_content():
    env = So101PickEnv(image_size=64)
    obs = env.reset(seed=0)
    image = obs.images[TASK.cameras[0].name]
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert image.std() > 5  # a scene, not a blank buffer
    np.testing.assert_array_equal(So101PickEnv(image_size=64).reset(seed=0).images["front"], image)
    moved = env.step(np.array([0.6, *obs.joints[1:]]))  # swing the arm
    assert not np.array_equal(moved.images["front"], image)
    env.close()
    full = So101PickEnv()
    assert full.reset(seed=0).images["front"].shape == (TASK.cameras[0].height, TASK.cameras[0].width, 3)
    full.close()


def test_expert_picks_the_cube(env):
    for seed in (100, 101, 102):
        success, steps, actions = rollout(env, seed)
        assert success, seed
        assert env.last.lift > TASK.success.threshold and steps < MAX_STEPS
        assert np.all(actions >= env.low) and np.all(actions <= env.high)


def test_expert_is_deterministic_and_noise_degrades_it(env):
    a, b = rollout(env, 5, ArmExpertConfig.noisy(1.0)), rollout(env, 5, ArmExpertConfig.noisy(1.0))
    assert a[0] == b[0] and a[1] == b[1]
    np.testing.assert_array_equal(a[2], b[2])
    clean = rollout(env, 5)[2]
    assert not np.allclose(clean[:5], a[2][:5])
    heavy = [rollout(env, seed, ArmExpertConfig.noisy(3.0))[0] for seed in range(200, 204)]
    assert sum(heavy) <= 2, heavy  # a heavily degraded expert mostly fails


def test_expert_refuses_a_bad_state():
    expert = ArmExpert()
    with pytest.raises(ValueError, match="13 finite"):
        expert.act(np.zeros(12))
    with pytest.raises(ValueError):
        ArmExpertConfig(distraction_prob=2.0)
