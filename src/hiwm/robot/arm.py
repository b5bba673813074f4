"""A joint-position task world behind a lab arm's controller interface, free of middleware.

What ros2_control's controllers take, executed on a :class:`~hiwm.tasks.joint_env.JointEnv`:
a joint_trajectory_controller trajectory (joint names in any order, position waypoints at increasing
``time_from_start``) and a forward position command (one value per joint, in the task's order).

``lockstep``: every command runs at once, one control step per trajectory point (or per forward
command), and each step's observation is returned; the caller sets the pace.
``realtime``: :meth:`ArmRobot.tick`, called at the control rate, steps toward the current target:
a trajectory is sampled at the tick's time (linear from where the target was on receipt, as
joint_trajectory_controller interpolates positions), a forward command is held until the next one,
and a new trajectory replaces the one running. An empty trajectory stops it where it is.

Commands are checked whole before anything moves (:class:`BadCommand`: unknown or missing joint
names, wrong lengths, NaN or infinity, targets out of the joint limits, times not increasing).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np

from hiwm.tasks.chunks import CLOCKS, BadCommand
from hiwm.tasks.joint_env import JointEnv, JointObservation


@dataclass
class Trajectory:
    """A trajectory being played in real time: waypoints after ``start``, from ``origin``."""

    start: float  # clock seconds at receipt
    times: np.ndarray  # (n,) seconds from start, increasing
    positions: np.ndarray  # (n, joints)
    origin: np.ndarray  # the target when it arrived

    def sample(self, now: float) -> np.ndarray:
        t = np.concatenate([[0.0], self.times])
        q = np.vstack([self.origin, self.positions])
        elapsed = now - self.start
        return np.array([np.interp(elapsed, t, q[:, j]) for j in range(q.shape[1])])

    def finished(self, now: float) -> bool:
        return now - self.start >= self.times[-1]


class ArmRobot:
    """A JointEnv with episode ids, validated controller commands and a clock.

    ``metric`` names the observation attribute the task reports as its success metric; the
    episode's best value so far is kept in :attr:`best_metric`.
    """

    def __init__(
        self,
        env: JointEnv,
        joint_names: tuple[str, ...] | list[str],
        metric: str,
        clock: str = "lockstep",
        seed: int | None = None,
    ) -> None:
        if clock not in CLOCKS:
            raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
        self.env, self.joint_names, self.metric_name, self.clock = env, list(joint_names), metric, clock
        self.index = {name: i for i, name in enumerate(self.joint_names)}
        self.episode_id = ""
        self.target = np.zeros(len(self.joint_names))
        self.trajectory: Trajectory | None = None
        self.best_metric = 0.0
        self.reset(seed=seed)

    @property
    def observation(self) -> JointObservation:
        return self.env.last

    def metric(self, obs: JointObservation) -> float:
        return float(getattr(obs, self.metric_name))

    # -- episodes -------------------------------------------------------------------------------
    def reset(self, seed: int | None = None, state: np.ndarray | None = None) -> JointObservation:
        """A new episode (new id); drops the running trajectory.

        From ``seed``, or from ``state``: the world's privileged state (``task/state``: placed there at
        rest), or a full ``get_state`` vector (``env.state_size`` numbers: restored exactly).
        ValueError (and the episode goes on) if ``state`` is neither.
        """
        if state is not None and np.size(state) == self.env.state_size:
            obs = self.env.set_state(state)
        else:
            obs = self.env.reset(seed=seed, state=state)
        self.episode_id = uuid.uuid4().hex[:12]
        self.trajectory = None
        self.target = np.asarray(obs.joints, dtype=np.float64).copy()  # hold still until the first command
        self.best_metric = self.metric(obs)
        return obs

    # -- commands -------------------------------------------------------------------------------
    def check_target(self, values: object, where: str = "") -> np.ndarray:
        """One target in joint order, or BadCommand."""
        n = len(self.joint_names)
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
        if arr.size != n:
            raise BadCommand("length", f"{where}{arr.size} positions, expected {n} ({', '.join(self.joint_names)})")
        if not np.all(np.isfinite(arr)):
            raise BadCommand("finite", f"{where}positions must be finite (NaN or infinity refused): {arr.tolist()}")
        try:
            return self.env.validate_action(arr)
        except ValueError as exc:
            raise BadCommand("limits", f"{where}{exc}") from None

    def order(self, names: list[str]) -> np.ndarray:
        """Indices mapping a trajectory's joint order onto ours; BadCommand unless it names each joint once."""
        unknown = [n for n in names if n not in self.index]
        if unknown:
            raise BadCommand("names", f"unknown joint names {unknown}; the arm's joints are {self.joint_names}")
        missing = [n for n in self.joint_names if n not in names]
        if missing or len(names) != len(set(names)):
            raise BadCommand("names", f"joint_names must name each joint once; missing {missing}, given {names}")
        return np.array([names.index(n) for n in self.joint_names])

    def _check_running(self) -> None:
        if self.observation.done:
            raise BadCommand("done", "the episode is done; call robot/reset first")

    def command_trajectory(
        self, names: list[str], times: list[float], points: list[object], now: float
    ) -> list[JointObservation]:
        """A joint_trajectory_controller goal. Lockstep: one step per point, observations returned."""
        take = self.order(list(names))
        if not points:
            if self.clock == "realtime" and self.trajectory is not None:
                self.target, self.trajectory = self.trajectory.sample(now), None
            return []
        self._check_running()
        t = np.asarray(times, dtype=np.float64)
        if not np.all(np.isfinite(t)) or np.any(t < 0) or np.any(np.diff(t) <= 0):
            raise BadCommand("time", f"time_from_start must be >= 0 and strictly increasing, got {t.tolist()}")
        rows = []
        for k, p in enumerate(points):
            p = np.asarray(p, dtype=np.float64).reshape(-1)
            if p.size != len(names):
                raise BadCommand("length", f"point {k}: {p.size} positions for {len(names)} joint names")
            rows.append(self.check_target(p[take], f"point {k}: "))
        if self.clock == "lockstep":
            return self._run(rows)
        origin = self.trajectory.sample(now) if self.trajectory is not None else self.target
        if t[-1] <= 0:  # every point at time 0: go to the last one at once
            self.target, self.trajectory = rows[-1], None
        else:
            self.trajectory = Trajectory(now, t, np.array(rows), origin)
        return []

    def command_positions(self, values: object) -> list[JointObservation]:
        """A forward position command. Lockstep: one step; realtime: the target held from now on."""
        target = self.check_target(values)
        self._check_running()
        if self.clock == "lockstep":
            return self._run([target])
        self.target, self.trajectory = target, None
        return []

    def tick(self, now: float) -> JointObservation | None:
        """One real-time control step toward the current target; None once the episode is done."""
        if self.observation.done:
            return None
        if self.trajectory is not None:
            self.target = self.trajectory.sample(now)
            if self.trajectory.finished(now):
                self.trajectory = None
        return self._step(self.target)

    def _run(self, rows: list[np.ndarray]) -> list[JointObservation]:
        out = []
        for row in rows:
            out.append(self._step(row))
            if out[-1].done:
                break
        return out

    def _step(self, target: np.ndarray) -> JointObservation:
        self.target = np.asarray(target, dtype=np.float64)
        obs = self.env.step(np.clip(self.target, self.env.low, self.env.high))
        self.best_metric = max(self.best_metric, self.metric(obs))
        return obs
