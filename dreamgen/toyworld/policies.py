"""The policy interface ToyWorld's evaluator runs, and the two policies ToyWorld itself provides.

A policy is any object with

    reset() -> None                                  # a new episode starts
    act(observation: dict) -> np.ndarray             # one action, float (4,) in [-1, 1]

where observation = {"image": uint8 (H, W, 3), "state": float32 (4,), "instruction": str}.
Optionally `bind(env)`: called after each `env.reset()`, for privileged policies (the scripted
expert) that read the simulator directly.

`builtin_policy(spec)` gives the scripted expert ("expert") or a seeded random policy ("random").
Trained checkpoints are opened by the policy stage (`dreamgen.policy.eval.load_toyworld_policy`), which
the `toyworld eval` and `eval-policy` commands call.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from dreamgen.toyworld.env import ACTION_NAMES


@runtime_checkable
class Policy(Protocol):
    def reset(self) -> None: ...

    def act(self, observation: dict[str, Any]) -> np.ndarray: ...


class RandomPolicy:
    """Uniform random actions; seeded so evaluation stays reproducible."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        pass

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, len(ACTION_NAMES)).astype(np.float32)


def builtin_policy(spec: str, seed: int = 0) -> Any | None:
    """'expert' (scripted, privileged) or 'random'; None for any other spec."""
    if spec == "expert":
        from dreamgen.toyworld.experts import ExpertPolicy

        return ExpertPolicy()
    if spec == "random":
        return RandomPolicy(seed)
    return None
