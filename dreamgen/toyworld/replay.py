"""Open-loop replay: does a sequence of actions complete the task from an episode's initial state?

ToyWorld is deterministic given (behavior, env, seed), so replaying actions labelled by an IDM (from
a real episode or from a dream of it) checks them against the exact success predicate.
"""

from __future__ import annotations

import numpy as np

from dreamgen.toyworld.env import IMAGE_SIZE, ToyWorldEnv


def replay_actions(actions: np.ndarray, behavior: str, env: str, seed: int, image_size: int = IMAGE_SIZE,
                   arm_style: str = "default") -> bool:
    """Execute `actions` (T, 4), clipped to [-1, 1], from the initial state of (behavior, env, seed)."""
    sim = ToyWorldEnv(behavior=behavior, env=env, image_size=image_size, arm_style=arm_style,
                      max_episode_steps=len(actions) + 1)
    try:
        sim.reset(seed=seed)
        for a in np.clip(np.asarray(actions, dtype=np.float32), -1.0, 1.0):
            _, _, terminated, truncated, info = sim.step(a)
            if terminated or info.get("success"):
                return True
            if truncated:
                break
        return False
    finally:
        sim.close()


def integrate_state(actions: np.ndarray) -> np.ndarray:
    """Proprio states (T, 4) an episode from the home pose would observe under `actions` (T, 4).

    ToyWorld's arm moves its end effector exactly by the commanded delta (clipped to the workspace) and
    its gripper closure by a fixed rate, so row t's state (before action t) is the integral of actions
    0..t-1. This gives dreams, which carry no proprioception, the state their IDM labels imply.
    """
    from dreamgen.toyworld.env import GRIPPER_SPEED, MAX_STEP
    from dreamgen.toyworld.scene import HOME_EE, WORKSPACE_HIGH, WORKSPACE_LOW

    ee, closure = HOME_EE.astype(np.float64).copy(), 0.0
    states = np.zeros((len(actions), 4), np.float32)
    for t, a in enumerate(np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0)):
        states[t] = [*ee, closure]
        ee = np.clip(ee + a[:3] * MAX_STEP, WORKSPACE_LOW, WORKSPACE_HIGH)
        closure = float(np.clip(closure + (GRIPPER_SPEED if a[3] > 0 else -GRIPPER_SPEED), 0.0, 1.0))
    return states
