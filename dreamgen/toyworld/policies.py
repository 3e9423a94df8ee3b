"""The policy interface `toyworld eval` runs, and the loader registry other stages plug into.

A policy is any object with

    reset() -> None                                  # a new episode starts
    act(observation: dict) -> np.ndarray             # one action, float (4,) in [-1, 1]

where observation = {"image": uint8 (H, W, 3), "state": float32 (4,), "instruction": str}.
Optionally `bind(env)`: called after each `env.reset()`, for privileged policies (the scripted
expert) that read the simulator directly.

`load_policy(spec)` turns "expert", "random" or a path into a policy. Other stages add loaders
without editing this file:

    from dreamgen.toyworld.policies import register_policy_loader
    register_policy_loader(lambda spec: (Path(spec) / "config.json").is_file(), load_my_checkpoint)

and modules named in `POLICY_LOADER_MODULES` (or the env var DREAMGEN_POLICY_LOADERS, comma
separated) are imported on the first `load_policy` call so their registrations take effect.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from dreamgen.errors import DreamgenError
from dreamgen.toyworld.env import ACTION_NAMES

log = logging.getLogger(__name__)

# Imported (if they exist) before resolving a path: the policy stage registers its LeRobot loader there.
POLICY_LOADER_MODULES = ["dreamgen.policy.toyworld", "dreamgen.policy.eval"]


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


_LOADERS: list[tuple[Callable[[str], bool], Callable[[str], Any], str]] = []
_PLUGINS_IMPORTED = False


def register_policy_loader(predicate: Callable[[str], bool], loader: Callable[[str], Any], name: str = "") -> None:
    """Add a loader: `predicate(spec)` says whether `loader(spec)` can build a policy from `spec`.

    Loaders registered later win, so a more specific loader can override a generic one.
    """
    _LOADERS.insert(0, (predicate, loader, name or getattr(loader, "__name__", "loader")))


def _import_plugins() -> None:
    global _PLUGINS_IMPORTED
    if _PLUGINS_IMPORTED:
        return
    _PLUGINS_IMPORTED = True
    extra = [m for m in os.environ.get("DREAMGEN_POLICY_LOADERS", "").split(",") if m.strip()]
    for name in POLICY_LOADER_MODULES + extra:
        try:
            importlib.import_module(name.strip())
        except ModuleNotFoundError as exc:
            if exc.name is None or not name.strip().startswith(exc.name):
                raise
            log.debug("policy loader module %s not present", name)


def load_policy(spec: str, seed: int = 0) -> Any:
    """'expert' (scripted, privileged), 'random', or a path some registered loader accepts."""
    if spec == "expert":
        from dreamgen.toyworld.experts import ExpertPolicy

        return ExpertPolicy()
    if spec == "random":
        return RandomPolicy(seed)
    _import_plugins()
    for predicate, loader, _ in _LOADERS:
        try:
            ok = predicate(spec)
        except Exception:  # noqa: BLE001 - a predicate that cannot judge the spec does not match it
            ok = False
        if ok:
            policy = loader(spec)
            if not isinstance(policy, Policy):
                raise DreamgenError(f"{spec}: loader returned {type(policy).__name__}, which lacks reset()/act()")
            return policy
    names = ", ".join(n for _, _, n in _LOADERS) or "none registered"
    exists = "exists" if os.path.exists(spec) else "does not exist"
    raise DreamgenError(
        f"cannot load a ToyWorld policy from {spec!r} (path {exists}): use 'expert', 'random', or a checkpoint "
        f"a registered loader accepts (loaders: {names})"
    )
