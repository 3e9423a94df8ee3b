"""Closed-loop evaluation: a LeRobot policy checkpoint acting in ToyWorld.

`LeRobotToyWorldPolicy` wraps a checkpoint in ToyWorld's policy interface (`reset()`,
`act(observation) -> action` with observation = {"image": uint8 HxWx3, "state": float32,
"instruction": str}). `register_toyworld_loader()` teaches `dreamgen toyworld eval` to open LeRobot
checkpoints; `eval_policy` is what `dreamgen eval-policy` runs: success per behavior/environment with
95% Wilson intervals, rollout videos saved by ToyWorld's evaluator.
"""

from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from dreamgen.errors import DreamgenError
from dreamgen.policy.checkpoint import LoadedPolicy, load_policy_checkpoint
from dreamgen.policy.task_encoding import TASK_FEATURE_KEY

log = logging.getLogger(__name__)

# Episode seeds of `eval-policy` start here unless given: ToyWorld's `collect` and `eval` both default to
# seed 0, so evaluating at 0 would replay the very layouts the demonstrations were recorded on.
HELD_OUT_SEED = 1000


class LeRobotToyWorldPolicy:
    """A LeRobot policy driven one observation at a time (action chunks are queued by the policy)."""

    def __init__(self, loaded: LoadedPolicy):
        self.loaded = loaded
        self.policy = loaded.policy
        self.image_keys = loaded.image_keys
        if not self.image_keys:
            raise DreamgenError(f"{loaded.folder}: the policy has no image input; ToyWorld gives camera images")
        self.state_key = loaded.state_key
        feats = self.policy.config.input_features
        self.image_shapes = {k: tuple(feats[k].shape) for k in self.image_keys}  # (C, H, W)
        self.device = next(self.policy.parameters()).device
        self.task_encoder = loaded.task_encoder
        env = feats.get(TASK_FEATURE_KEY)
        self.task_feature_dim = int(env.shape[0]) if env is not None else None

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | None = None, **_: Any) -> LeRobotToyWorldPolicy:
        """`device` None: $DREAMGEN_POLICY_DEVICE, else cuda when available, else cpu."""
        return cls(load_policy_checkpoint(path, device=device or os.environ.get("DREAMGEN_POLICY_DEVICE") or None))

    def reset(self) -> None:
        self.policy.reset()

    def _image_tensor(self, image: np.ndarray, key: str):
        import torch
        import torch.nn.functional as F  # noqa: N812

        img = np.asarray(image)
        if img.ndim != 3 or img.shape[-1] != 3:
            raise DreamgenError(f"observation image must be HxWx3, got shape {img.shape}")
        t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255.0
        _, h, w = self.image_shapes[key]
        if t.shape[-2:] != (h, w):
            t = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        return t

    def observation_batch(self, observation: dict[str, Any]) -> dict[str, Any]:
        import torch

        images = observation.get("images") or {}
        batch: dict[str, Any] = {}
        for i, key in enumerate(self.image_keys):
            short = key.rsplit(".", 1)[-1]
            img = images.get(key, images.get(short))
            if img is None:
                if i > 0 or "image" not in observation:
                    raise DreamgenError(f"observation has no image for the policy's camera {key!r}")
                img = observation["image"]
            batch[key] = self._image_tensor(img, key)
        if self.state_key is not None:
            if observation.get("state") is None:
                raise DreamgenError("the policy uses state but the observation has none")
            batch[self.state_key] = torch.as_tensor(np.asarray(observation["state"], dtype=np.float32))[None]
        instruction = str(observation.get("instruction", ""))
        batch["task"] = [instruction]
        if self.task_encoder.enabled:
            batch[TASK_FEATURE_KEY] = self.task_encoder.tensor([instruction])
        elif self.task_feature_dim is not None:  # a foreign checkpoint with an environment-state input
            batch[TASK_FEATURE_KEY] = torch.zeros(1, self.task_feature_dim)
        return batch

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        import torch

        batch = self.loaded.preprocessor(self.observation_batch(observation))
        with torch.inference_mode():
            action = self.policy.select_action(batch)
        action = self.loaded.postprocessor(action)
        return np.asarray(action.detach().cpu().float().numpy()).reshape(-1).astype(np.float32)


def is_lerobot_checkpoint(path: str | Path) -> bool:
    """True for a run, step or `pretrained_model/` folder holding a LeRobot policy."""
    p = Path(path)
    for cand in (p, p / "pretrained_model", p / "checkpoints" / "last" / "pretrained_model"):
        cfg = cand / "config.json"
        if cfg.is_file() and (cand / "policy_preprocessor.json").is_file():
            return True
    return False


_REGISTERED = False


def register_toyworld_loader() -> bool:
    """Let ToyWorld's evaluator open LeRobot checkpoints. False when ToyWorld has no loader hook."""
    global _REGISTERED
    if _REGISTERED:
        return True
    try:
        from dreamgen.toyworld.policies import register_policy_loader
    except ImportError:
        return False
    register_policy_loader(is_lerobot_checkpoint, LeRobotToyWorldPolicy.from_checkpoint, name="lerobot")
    _REGISTERED = True
    return True


def _toyworld_evaluate():
    for mod in ("dreamgen.toyworld.evaluate", "dreamgen.toyworld"):
        try:
            m = __import__(mod, fromlist=["evaluate"])
        except ImportError:
            continue
        fn = getattr(m, "evaluate", None)
        if callable(fn):
            return fn
    raise DreamgenError("ToyWorld's evaluator (dreamgen.toyworld evaluate) is not available in this install")


def eval_policy(checkpoint: str | Path, out_dir: str | Path | None = None, device: str | None = None,
                **eval_kwargs: Any) -> Any:
    """Closed-loop success of a LeRobot checkpoint in ToyWorld (per behavior/environment, Wilson 95% CI).

    Extra keyword arguments (behaviors, envs/environments, episodes, seed, videos, ...) go to ToyWorld's
    `evaluate`; only the ones its signature accepts are passed. `seed` defaults to HELD_OUT_SEED (1000),
    not ToyWorld's 0, so the episodes are not the layouts demonstrations were collected on.
    """
    policy = LeRobotToyWorldPolicy.from_checkpoint(checkpoint, device=device)
    register_toyworld_loader()
    evaluate = _toyworld_evaluate()
    params = inspect.signature(evaluate).parameters
    kwargs = {k: v for k, v in eval_kwargs.items() if v is not None}
    if "seed" in params and "seed" not in kwargs:
        kwargs["seed"] = HELD_OUT_SEED
    if "videos" in kwargs and "save_videos" in params:
        kwargs["save_videos"] = kwargs.pop("videos")
    from dreamgen.toyworld import scene, tasks

    for name, table in (("behaviors", tasks.BEHAVIORS), ("envs", scene.ENVIRONMENTS)):
        if name in params and name not in kwargs:
            kwargs[name] = list(table)  # default: every behavior / environment
    if "episodes" in params and "episodes" not in kwargs:
        kwargs["episodes"] = 20
    if out_dir is not None:
        for name in ("out_dir", "output_dir", "out"):
            if name in params:
                kwargs[name] = Path(out_dir)
                break
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    dropped = [k for k in kwargs if k not in params and not accepts_any]
    if dropped:
        log.warning("ToyWorld evaluate() does not take %s; ignored", dropped)
    kwargs = {k: v for k, v in kwargs.items() if k in params or accepts_any}
    return evaluate(policy, **kwargs)


# ToyWorld imports this module as a policy-loader plugin (dreamgen.toyworld.policies.POLICY_LOADER_MODULES):
# registering here makes `dreamgen toyworld eval --policy <lerobot checkpoint>` work.
register_toyworld_loader()
