"""Actions from a state trajectory, by the embodiment's `action_from_state` rules.

An IDM that estimates the robot's state in every frame gives actions as differences of consecutive
estimates: a per-frame error of e metres then shifts each action by at most 2e and the replayed
trajectory never drifts (the errors telescope), where independently predicted deltas add up.
"""

from __future__ import annotations

import numpy as np

from dreamgen.embodiments.embodiment import ActionFromState


def actions_from_states(states: np.ndarray, rules: list[ActionFromState],
                        direct: np.ndarray | None = None, action_dim: int | None = None) -> np.ndarray:
    """states (T, S) raw -> actions (T, A) raw. Row t is the action between frames t and t+1; the last row
    holds still (zero deltas, last targets, the gripper as it was). Dimensions no rule covers come from
    `direct` (the IDM's own action head) or stay 0."""
    states = np.asarray(states, dtype=np.float64)
    t = len(states)
    if direct is not None:
        out = np.array(direct, dtype=np.float64, copy=True)
    else:
        out = np.zeros((t, action_dim or max((r.action[1] for r in rules), default=0)), np.float64)
    for r in rules:
        a0, a1 = r.action
        s = states[:, r.state[0]:r.state[1]]
        nxt = np.concatenate([s[1:], s[-1:]])  # the last frame: nothing follows, hold still
        if r.kind == "delta":
            out[:, a0:a1] = (nxt - s) * r.scale
        elif r.kind == "next":
            out[:, a0:a1] = nxt
        else:  # sign_of_change
            change = nxt - s
            steady = np.where(s > r.threshold, 1.0, -1.0)
            eps = r.deadband
            out[:, a0:a1] = np.where(change > eps, 1.0, np.where(change < -eps, -1.0, steady))
            if t > 1:
                out[-1, a0:a1] = out[-2, a0:a1]
    return out.astype(np.float32)


def describe(rules: list[ActionFromState]) -> str:
    """One line for provenance: how each derived action group was obtained."""
    parts = []
    for r in rules:
        how = {"delta": f"(s[t+1] - s[t]) * {r.scale:g}", "next": "s[t+1]",
               "sign_of_change": f"sign of the change of s (held: +1 above {r.threshold:g})"}[r.kind]
        parts.append(f"action[{r.action[0]}:{r.action[1]}] = {how} of state[{r.state[0]}:{r.state[1]}]")
    return "; ".join(parts)
