"""A scripted Push-T expert that works from the true state, with knobs for noise and sub-optimality.

How it pushes: the block moves quasi-statically (gym-pusht damps all velocity every
physics step and contacts are frictionless), so a push at boundary point ``c`` along
the inward normal ``n`` moves the block by the twist a free rigid body takes from an
impulse along ``n`` at ``c``. Every step the expert scores contact points sampled on
the T's outline by how well that twist reduces the pose error (position of the centre
of gravity and angle, weighted by a length scale), picks the best (with hysteresis and a
travel penalty), walks around the block to a pre-contact pose on a collision-free
path through offset corners of the T, and then pushes by an amount proportional to the
remaining error.
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass

import numpy as np
import pymunk
import shapely
from shapely.affinity import affine_transform
from shapely.geometry import Polygon

from hiwm.tasks.pusht.env import ACTION_HIGH, ACTION_LOW, GOAL_POSE, _GymPushT

AGENT_RADIUS = 15.0  # gym-pusht's agent circle
WORKSPACE = (25.0, 487.0)  # where the agent centre fits inside the walls (5 and 506, radius 2)


@dataclass
class ExpertConfig:
    """Expert behaviour. The defaults are the noise-free expert; the rest degrades it on purpose."""

    action_noise_std: float = 0.0  # px, Gaussian noise on every action
    distraction_prob: float = 0.0  # chance per step of starting a random "distraction" segment
    distraction_steps: tuple[int, int] = (5, 15)  # length range of a distraction (steps)
    contact_error: float = 0.0  # px, std of the error on the chosen contact point (approach-point error)
    replan_every: int = 1  # re-choose the contact only every N steps (lazy re-planning)
    # controller tuning (rarely changed)
    push_gain: float = 1.5  # commanded push depth per px of wanted block motion
    max_push: float = 25.0  # px, largest commanded push depth per step
    approach_margin: float = 10.0  # px between agent surface and block at the pre-contact pose
    angle_scale: float = 60.0  # px per radian when weighing angle against position error
    travel_scale: float = 150.0  # px of travel to a contact that halve its score
    carrot: float = 35.0  # px, how far ahead along the approach path the agent is sent (sets its speed)
    keep_ratio: float = 0.75  # keep the current contact while its score is >= this times the best

    def __post_init__(self) -> None:
        if self.action_noise_std < 0 or self.contact_error < 0:
            raise ValueError("noise standard deviations must be >= 0")
        if not 0.0 <= self.distraction_prob <= 1.0:
            raise ValueError(f"distraction_prob must be in [0, 1], got {self.distraction_prob}")
        lo, hi = self.distraction_steps
        if not 1 <= lo <= hi:
            raise ValueError(f"distraction_steps must be 1 <= lo <= hi, got {self.distraction_steps}")
        if self.replan_every < 1:
            raise ValueError(f"replan_every must be >= 1, got {self.replan_every}")

    @classmethod
    def noisy(cls, level: float) -> ExpertConfig:
        """A preset: 0 is the clean expert, 1 a sloppy one, 2 and up mostly failing."""
        if level < 0:
            raise ValueError(f"noise level must be >= 0, got {level}")
        return cls(
            action_noise_std=4.0 * level,
            distraction_prob=0.02 * level,
            contact_error=4.0 * level,
            replan_every=1 + round(2 * level),
        )


class _Tee:
    """The T block's geometry in its body frame, taken from gym-pusht's ``add_tee``."""

    def __init__(self) -> None:
        body, shapes = _GymPushT.add_tee(pymunk.Space(), (0, 0), 0)
        self.mass = float(body.mass)
        self.moment = float(body.moment)
        self.cog = np.array(body.center_of_gravity, dtype=np.float64)
        self.polygon = shapely.union_all([Polygon([tuple(v) for v in s.get_vertices()]) for s in shapes])
        self.polygon = shapely.normalize(shapely.simplify(self.polygon, 0.01))
        ring = np.array(self.polygon.exterior.coords)[:-1]
        if not Polygon(ring).exterior.is_ccw:  # walk the outline so that the outward normal is (dy, -dx)
            ring = ring[::-1]
        self.vertices = ring
        self.contacts, self.normals = self._sample_contacts(spacing=6.0, inset=3.0)
        self.corner_dirs = self._corner_directions()

    def _edges(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        out = []
        for a, b in zip(self.vertices, np.roll(self.vertices, -1, axis=0), strict=True):
            d = (b - a) / np.linalg.norm(b - a)
            out.append((a, b, np.array([d[1], -d[0]])))
        return out

    def _sample_contacts(self, spacing: float, inset: float) -> tuple[np.ndarray, np.ndarray]:
        points, normals = [], []
        for a, b, outward in self._edges():
            length = float(np.linalg.norm(b - a))
            for t in np.linspace(inset, length - inset, max(2, int((length - 2 * inset) / spacing) + 1)):
                c = a + (b - a) * (t / length)
                centre = shapely.Point(*(c + outward * AGENT_RADIUS))
                if self.polygon.distance(centre) >= AGENT_RADIUS - 0.5:  # the agent fits there
                    points.append(c)
                    normals.append(outward)
        return np.array(points), np.array(normals)

    def _corner_directions(self) -> np.ndarray:
        """Per outline vertex, the sum of the outward normals of its two edges."""
        outs = np.array([o for _, _, o in self._edges()])
        return outs + np.roll(outs, 1, axis=0)

    def twists(self) -> np.ndarray:
        """(N, 3) body-frame twist (vx, vy, omega) per unit push along the inward normal at each contact."""
        n = -self.normals
        r = self.contacts - self.cog
        cross = r[:, 0] * n[:, 1] - r[:, 1] * n[:, 0]
        j = 1.0 / (1.0 / self.mass + cross**2 / self.moment)
        return np.column_stack([j[:, None] * n / self.mass, j * cross / self.moment])


def _rot(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


class ScriptedExpert:
    """Solves Push-T from the true state ``[agent x, y, block x, y, angle]``; deterministic given ``seed``."""

    TEE: _Tee | None = None

    def __init__(self, config: ExpertConfig | None = None, seed: int | None = None) -> None:
        self.config = config or ExpertConfig()
        if ScriptedExpert.TEE is None:
            ScriptedExpert.TEE = _Tee()
        self.tee = ScriptedExpert.TEE
        self._body_twists = self.tee.twists()
        self.rng = np.random.default_rng(seed)
        goal_rot = _rot(GOAL_POSE[2])
        self.goal_cog = GOAL_POSE[:2] + goal_rot @ self.tee.cog
        self.reset()

    def reset(self) -> None:
        """Forget the current contact and any distraction (call at the start of an episode)."""
        self.contact: int | None = None
        self.contact_offset = np.zeros(2)
        self.steps = 0
        self.distraction_left = 0
        self.distraction_target = np.zeros(2)
        self.phase = "approach"

    # -- the policy ------------------------------------------------------------
    def act(self, state: np.ndarray) -> np.ndarray:
        """The next action (target agent position, (2,), within [0, 512])."""
        state = np.asarray(state, dtype=np.float64).reshape(-1)
        if state.shape != (5,) or not np.all(np.isfinite(state)):
            raise ValueError(f"state must be 5 finite numbers, got {state.tolist()}")
        cfg = self.config
        agent = state[:2]
        if self.distraction_left == 0 and cfg.distraction_prob > 0 and self.rng.random() < cfg.distraction_prob:
            lo, hi = cfg.distraction_steps
            self.distraction_left = int(self.rng.integers(lo, hi + 1))
            self.distraction_target = self.rng.uniform(*WORKSPACE, size=2)
            self.contact = None
        if self.distraction_left > 0:
            self.distraction_left -= 1
            self.phase = "distracted"
            action = agent + np.clip(self.distraction_target - agent, -30, 30)
        else:
            action = self._plan(agent, state[2:4], float(state[4]))
        self.steps += 1
        if cfg.action_noise_std > 0:
            action = action + self.rng.normal(0.0, cfg.action_noise_std, size=2)
        return np.clip(action, ACTION_LOW, ACTION_HIGH)

    def _plan(self, agent: np.ndarray, block_xy: np.ndarray, theta: float) -> np.ndarray:
        cfg, tee = self.config, self.tee
        rot = _rot(theta)
        cog = block_xy + rot @ tee.cog
        error = np.array([*(self.goal_cog - cog), cfg.angle_scale * _wrap(GOAL_POSE[2] - theta)])
        twists = self._body_twists.copy()
        twists[:, :2] = twists[:, :2] @ rot.T
        twists[:, 2] *= cfg.angle_scale
        norms = np.linalg.norm(twists, axis=1)
        gain = twists @ error / norms  # px of pose error removed per unit of (normalised) push
        contacts = block_xy + tee.contacts @ rot.T
        outward = tee.normals @ rot.T
        pre = contacts + outward * (AGENT_RADIUS + cfg.approach_margin)
        feasible = np.all((pre >= WORKSPACE[0]) & (pre <= WORKSPACE[1]), axis=1)
        travel = np.linalg.norm(pre - agent, axis=1)
        if self.contact is not None:
            travel[self.contact] = 0.0  # the engaged contact costs no travel
        score = np.where(feasible & (gain > 0), gain / (1.0 + travel / cfg.travel_scale), -np.inf)

        replan = self.contact is None or self.steps % cfg.replan_every == 0
        if replan:
            best = int(np.argmax(score))
            keep = (
                self.contact is not None
                and score[self.contact] > 0
                and (score[self.contact] >= cfg.keep_ratio * score[best])
            )
            if not keep:
                self.contact = best
                self.contact_offset = (
                    self.rng.normal(0.0, cfg.contact_error, size=2) if cfg.contact_error > 0 else np.zeros(2)
                )
                self.phase = "approach"
        i = self.contact
        c = contacts[i] + self.contact_offset
        out = outward[i]
        rel = agent - c
        lateral = abs(rel @ np.array([-out[1], out[0]]))
        along = rel @ out
        engaged = lateral < 4.0 and AGENT_RADIUS - 4.0 <= along <= AGENT_RADIUS + cfg.approach_margin + 4.0
        if engaged and gain[i] > 0:
            self.phase = "push"
            depth = min(cfg.max_push, cfg.push_gain * gain[i] / norms[i])
            return c + out * (AGENT_RADIUS - depth)
        self.phase = "approach"
        return self._next_waypoint(agent, pre[i], block_xy, rot)

    # -- path planning around the block ------------------------------------------
    def _next_waypoint(self, agent: np.ndarray, goal: np.ndarray, block_xy: np.ndarray, rot: np.ndarray) -> np.ndarray:
        tee, cfg = self.tee, self.config
        clear = AGENT_RADIUS + cfg.approach_margin
        corners = block_xy + (tee.vertices + tee.corner_dirs * clear) @ rot.T
        corners = np.clip(corners, *WORKSPACE)
        block = affine_transform(tee.polygon, [rot[0, 0], rot[0, 1], rot[1, 0], rot[1, 1], *block_xy])
        nodes = np.vstack([agent, goal, corners])
        n = len(nodes)
        ii, jj = np.triu_indices(n, 1)
        segments = shapely.linestrings(np.stack([nodes[ii], nodes[jj]], axis=1))
        dist = shapely.distance(segments, block)
        # segments keep the agent off the block; the ends may be closer (touching, or in a pocket of the T)
        need = np.minimum(AGENT_RADIUS + 2.0, shapely.distance(shapely.points(nodes), block) - 0.5)
        ok = dist >= np.minimum(need[ii], need[jj])
        graph: dict[int, list[tuple[int, float]]] = {k: [] for k in range(n)}
        for a, b, good in zip(ii, jj, ok, strict=True):
            if good:
                w = float(np.linalg.norm(nodes[a] - nodes[b]))
                graph[a].append((b, w))
                graph[b].append((a, w))
        path = _shortest_path(graph, 0, 1)
        if path is None:
            return goal  # boxed in (against a wall): head straight for it
        return _carrot(nodes[path], cfg.carrot)


def _carrot(points: np.ndarray, distance: float) -> np.ndarray:
    """The point ``distance`` along the polyline ``points`` (its end if shorter): keeps the agent slow."""
    left = distance
    for a, b in itertools.pairwise(points):
        seg = float(np.linalg.norm(b - a))
        if seg >= left:
            return a + (b - a) * (left / seg)
        left -= seg
    return points[-1]


def _shortest_path(graph: dict[int, list[tuple[int, float]]], src: int, dst: int) -> list[int] | None:
    dist, prev, heap = {src: 0.0}, {}, [(0.0, src)]
    while heap:
        d, u = heapq.heappop(heap)
        if u == dst:
            path = [u]
            while path[-1] != src:
                path.append(prev[path[-1]])
            return path[::-1]
        if d > dist.get(u, math.inf):
            continue
        for v, w in graph[u]:
            if d + w < dist.get(v, math.inf):
                dist[v], prev[v] = d + w, u
                heapq.heappush(heap, (d + w, v))
    return None
