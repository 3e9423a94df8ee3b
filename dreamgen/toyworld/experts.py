"""Scripted experts: waypoint scripts computed from the simulator state at reset.

An expert is deterministic given the env's state (so given the seed). `ExpertPolicy` wraps them in
the evaluation `Policy` interface; it needs privileged access, which `evaluate` gives it through
the optional `bind(env)` hook.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dreamgen.toyworld.env import MAX_STEP, ToyWorldEnv
from dreamgen.toyworld.scene import BIN_FLOOR_TOP, CUBE_HALF, PLATE_TOP
from dreamgen.toyworld.tasks import DIRECTIONS, SIDES

EXPERT_SPEED = 0.6  # fraction of MAX_STEP per axis: unsaturated actions, ~30-step episodes a learner can follow
HOVER = 0.09  # fingertip height for moving above objects
CARRY = 0.11  # fingertip height while carrying (object bottom clears plate, bin walls and cubes)
GRASP_Z = 0.006  # fingertip height when grasping an object resting on the table
RELEASE_GAP = 0.004  # how far above its support an object is released
LIFT_TO = 0.20  # fingertip height of the lift behavior (the object's bottom clears LIFT_HEIGHT; CARRY does not)
PLACE_JITTER = 0.015  # radius (m) of the random offset from a receptacle's centre where objects are released


@dataclass
class Waypoint:
    pos: np.ndarray
    grip: float  # +1 closed, -1 open
    hold: int = 0  # extra steps to stay here (gripper actuation)
    speed: float = EXPERT_SPEED  # fraction of MAX_STEP per axis (slow pushes keep contact with the object)


class ScriptedExpert:
    """Follows a list of waypoints in straight lines at up to EXPERT_SPEED * MAX_STEP per axis per step."""

    def __init__(self, env: ToyWorldEnv) -> None:
        self.env = env
        self.waypoints = plan(env)
        self._i = 0
        self._held_for = 0

    @property
    def done(self) -> bool:
        return self._i >= len(self.waypoints)

    def act(self) -> np.ndarray:
        if self.done:
            return np.array([0.0, 0.0, 0.0, -1.0 if not self.env.held else 1.0], dtype=np.float32)
        wp = self.waypoints[self._i]
        delta = wp.pos - self.env.ee
        step = MAX_STEP * wp.speed
        scale = max(1.0, float(np.max(np.abs(delta))) / step)
        action = np.array([*(delta / scale / MAX_STEP), wp.grip], dtype=np.float32)
        if float(np.max(np.abs(delta))) <= step + 1e-9:  # this step reaches the waypoint
            if self._held_for >= wp.hold:
                self._i, self._held_for = self._i + 1, 0
            else:
                self._held_for += 1
        return np.clip(action, -1.0, 1.0)


def _above(p: np.ndarray, z: float) -> np.ndarray:
    return np.array([p[0], p[1], z])


def _pick(obj_pos: np.ndarray) -> list[Waypoint]:
    grasp_z = obj_pos[2] - CUBE_HALF + GRASP_Z
    return [
        Waypoint(_above(obj_pos, HOVER), -1),
        Waypoint(_above(obj_pos, grasp_z), -1),
        Waypoint(_above(obj_pos, grasp_z), 1, hold=2),  # the fingers close over 3 steps
        Waypoint(_above(obj_pos, CARRY), 1),
    ]


def _place(xy: np.ndarray, support_top: float, carry_z: float = CARRY) -> list[Waypoint]:
    # fingertips sit GRASP_Z below the held object's bottom (see _pick)
    release_z = support_top + RELEASE_GAP + GRASP_Z
    return [
        Waypoint(_above(xy, carry_z), 1),
        Waypoint(_above(xy, release_z), 1),
        Waypoint(_above(xy, release_z), -1, hold=1),
        Waypoint(_above(xy, release_z + 0.04), -1),
    ]


def plan(env: ToyWorldEnv) -> list[Waypoint]:
    """The waypoint script for the env's current episode (called right after reset)."""
    p = env.task_params
    b = env.behavior
    obj = env.object_position(p["object"])
    # a receptacle is hit at a random spot near its centre (deterministic given the episode seed)
    rng = np.random.default_rng(int(env.np_random.integers(2**31)))
    r, phi = PLACE_JITTER * np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
    jitter = np.array([r * np.cos(phi), r * np.sin(phi)])
    if b == "pick_place":
        return _pick(obj) + _place(env.layout.plate[:2] + jitter, PLATE_TOP)
    if b == "put_in_bin":
        return _pick(obj) + _place(env.layout.bin[:2] + jitter, BIN_FLOOR_TOP + 0.02, carry_z=CARRY + 0.02)
    if b == "lift":
        return _pick(obj)[:3] + [Waypoint(_above(obj, LIFT_TO), 1, hold=1)]
    if b == "stack":
        base = env.object_position(p["target"])
        return _pick(obj) + _place(base[:2], base[2] + CUBE_HALF)
    if b == "next_to":
        ref = env.object_position(p["target"])
        goal = ref[:2] + 0.07 * np.asarray(SIDES[p["side"]])
        return _pick(obj) + _place(goal, 0.0)
    if b == "push":
        d = np.asarray(DIRECTIONS[p["direction"]])
        behind = obj[:2] - d * 0.05  # the closed fingers (half-depth 0.013) just behind the object
        end = obj[:2] + d * 0.075  # the object ends ~0.11 from its start (0.08 required)
        z = 0.008
        return [
            Waypoint(np.array([*behind, HOVER]), 1),
            Waypoint(np.array([*behind, z]), 1),
            Waypoint(np.array([*end, z]), 1, speed=0.6 * EXPERT_SPEED),
            Waypoint(np.array([*end, HOVER]), 1),
        ]
    raise AssertionError(b)  # pragma: no cover


class ExpertPolicy:
    """The scripted expert behind the evaluation `Policy` interface (needs `bind(env)` each episode)."""

    privileged = True

    def __init__(self) -> None:
        self._env: ToyWorldEnv | None = None
        self._expert: ScriptedExpert | None = None

    def bind(self, env: ToyWorldEnv) -> None:
        self._env = env

    def reset(self) -> None:
        self._expert = None

    def act(self, observation: dict) -> np.ndarray:
        if self._env is None:
            raise RuntimeError("ExpertPolicy needs privileged state: call bind(env) after env.reset()")
        if self._expert is None:
            self._expert = ScriptedExpert(self._env)
        return self._expert.act()


def run_expert_episode(env: ToyWorldEnv, seed: int, options: dict | None = None, settle_steps: int = 0,
                       action_noise: float = 0.0):
    """Reset with `seed`, run the expert to success or the time limit.

    Returns (frames (T+1,H,W,3), states (T+1,S), actions (T,A), success, info). Frame t is observed
    before action t; the last frame is the one after the last action.

    `action_noise` > 0 perturbs what is executed (Gaussian, that std on each of dx, dy, dz; the gripper
    command is kept) while `actions` keeps the expert's own command: the states drift off the expert's path
    and the labels show how the expert corrects (DART, Laskey et al. 2017). Seeded by `seed`. Such labels
    are not the executed motion: for policy demonstrations, never for an inverse dynamics model.
    """
    obs, info = env.reset(seed=seed, options=options)
    expert = ScriptedExpert(env)
    rng = np.random.default_rng([seed, 7]) if action_noise > 0 else None
    frames, states, actions = [obs["image"]], [obs["state"]], []
    success, after = False, 0
    while True:
        a = expert.act()
        executed = a
        if rng is not None:
            executed = a.copy()
            executed[:3] = np.clip(a[:3] + rng.normal(0.0, action_noise, 3), -1.0, 1.0)
        obs, _, terminated, truncated, info = env.step(executed)
        frames.append(obs["image"])
        states.append(obs["state"])
        actions.append(a)
        success = success or info["success"]
        if success:
            after += 1
        if (success and after > settle_steps) or truncated or (terminated and after > settle_steps):
            break
    return np.stack(frames), np.stack(states), np.stack(actions).astype(np.float32), success, info
