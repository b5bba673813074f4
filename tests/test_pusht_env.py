"""PushTEnv on real gym-pusht physics: API, action validation, reset to state, rendering sizes."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from hiwm.tasks.pusht.env import GOAL_POSE, MAX_STEPS, PushTEnv, validate_action


def test_reset_and_step_fields():
    env = PushTEnv(seed=0)
    obs = env.reset()
    assert obs.image.shape == (96, 96, 3) and obs.image.dtype == np.uint8
    assert obs.agent_pos.shape == (2,) and obs.agent_vel.shape == (2,) and obs.block_pose.shape == (3,)
    assert obs.state.shape == (5,)
    np.testing.assert_allclose(obs.state, [*obs.agent_pos, *obs.block_pose])
    assert (obs.step, obs.done, obs.success) == (0, False, False)
    target = obs.agent_pos + np.array([30.0, 0.0])
    nxt = env.step(target)
    assert nxt.step == 1
    assert nxt.agent_pos[0] > obs.agent_pos[0] + 5  # the PD controller moved towards the target
    assert not np.array_equal(nxt.image, obs.image)


def test_seed_is_deterministic_and_seeds_differ():
    a, b, c = PushTEnv(render=False), PushTEnv(render=False), PushTEnv(render=False)
    np.testing.assert_array_equal(a.reset(seed=5).state, b.reset(seed=5).state)
    assert not np.array_equal(a.reset(seed=5).state, c.reset(seed=6).state)
    assert a.last.image is None  # render=False skips the camera


def test_validate_action():
    clean, warning = validate_action([10.0, 20.0])
    np.testing.assert_array_equal(clean, [10.0, 20.0])
    assert warning is None
    clean, warning = validate_action([-5.0, 600.0])
    np.testing.assert_array_equal(clean, [0.0, 512.0])
    assert "clamped" in warning
    for bad, reason in [([math.nan, 1.0], "finite"), ([math.inf, 1.0], "finite"), ([1.0, 2.0, 3.0], "2 values")]:
        with pytest.raises(ValueError, match=reason):
            validate_action(bad)
    env = PushTEnv(seed=0, render=False)
    env.reset()
    with pytest.raises(ValueError, match="finite"):
        env.step([math.nan, 0.0])


def test_reset_to_state_round_trip():
    env = PushTEnv(render=False)
    state = np.array([100.0, 400.0, 300.0, 200.0, 1.0])
    obs = env.reset(state=state)
    np.testing.assert_allclose(obs.state, state, atol=1e-6)
    again = env.reset(state=obs.state)
    np.testing.assert_allclose(again.state, obs.state, atol=1e-6)
    with pytest.raises(ValueError, match="5 finite"):
        env.reset(state=[1.0, 2.0])


def test_coverage_success_and_done():
    env = PushTEnv(render=False)
    at_goal = env.reset(state=np.array([50.0, 50.0, *GOAL_POSE]))
    assert at_goal.coverage > 0.99 and at_goal.success and at_goal.done
    away = env.reset(state=np.array([50.0, 50.0, 400.0, 100.0, 0.0]))
    assert away.coverage < 0.05 and not away.success and not away.done
    for _ in range(MAX_STEPS):
        obs = env.step(away.agent_pos)
    assert obs.step == MAX_STEPS and obs.done and not obs.success
    assert obs.max_coverage >= obs.coverage


def test_image_size_is_rendered_not_upscaled():
    state = np.array([100.0, 100.0, 256.0, 256.0, 0.3])
    small = PushTEnv(image_size=96).reset(state=state).image
    big = PushTEnv(image_size=128).reset(state=state).image
    assert small.shape == (96, 96, 3) and big.shape == (128, 128, 3)
    # the agent (blue) is drawn where it is: near (100, 100) of 512, in both sizes
    for image in (small, big):
        s = image.shape[0]
        r, g, b = (int(v) for v in image[round(100 / 512 * s), round(100 / 512 * s)])
        assert b > r + 40, (r, g, b)
    # 128 is rendered from the 512 table, not a 96 image scaled up
    upscaled = cv2.resize(small, (128, 128), interpolation=cv2.INTER_LINEAR)
    assert np.abs(upscaled.astype(int) - big.astype(int)).mean() > 1.0
