"""Closed-loop evaluation: a LeRobot policy checkpoint acting in ToyWorld.

`LeRobotToyWorldPolicy` wraps a checkpoint in ToyWorld's policy interface (`reset()`,
`act(observation) -> action` with observation = {"image": uint8 HxWx3, "state": float32,
"instruction": str}). `load_toyworld_policy(spec)` opens what `dreamgen toyworld eval --policy` names
("expert", "random" or a LeRobot checkpoint); `eval_policy` is what `dreamgen eval-policy` runs: success
per behavior/environment with 95% Wilson intervals, rollout videos saved by ToyWorld's evaluator.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dreamgen.errors import DreamgenError
from dreamgen.policy.checkpoint import LoadedPolicy, load_policy_checkpoint
from dreamgen.policy.task_encoding import TASK_FEATURE_KEY
from dreamgen.policy.task_step import ensure_task_step

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
        ensure_task_step(loaded.preprocessor, self.task_encoder)  # a no-op unless handed an older preprocessor
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
        # the preprocessor's instruction step (task_step.py) turns `task` into the policy's feature
        batch["task"] = [str(observation.get("instruction", ""))]
        if not self.task_encoder.enabled and self.task_feature_dim is not None:
            batch[TASK_FEATURE_KEY] = torch.zeros(1, self.task_feature_dim)  # a foreign environment-state input
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


def load_toyworld_policy(spec: str, seed: int = 0, device: str | None = None) -> Any:
    """'expert' (scripted, privileged), 'random', or a LeRobot checkpoint (run, step or model folder)."""
    from dreamgen.toyworld.policies import builtin_policy

    policy = builtin_policy(spec, seed)
    if policy is not None:
        return policy
    if is_lerobot_checkpoint(spec):
        return LeRobotToyWorldPolicy.from_checkpoint(spec, device=device)
    exists = "exists" if os.path.exists(spec) else "does not exist"
    raise DreamgenError(f"cannot load a ToyWorld policy from {spec!r} (path {exists}): use 'expert', 'random', "
                        "or a LeRobot checkpoint (a run, checkpoints/<step> or pretrained_model/ folder)")


def eval_policy(checkpoint: str | Path, out_dir: str | Path | None = None, device: str | None = None,
                behaviors: Sequence[str] | None = None, envs: Sequence[str] | None = None,
                episodes: int | None = None, seed: int | None = None, save_videos: int | None = None) -> dict:
    """Closed-loop success of a LeRobot checkpoint in ToyWorld (per behavior/environment, Wilson 95% CI).

    Defaults: every behavior and environment, 20 episodes each, ToyWorld's number of saved rollouts, and
    `seed` HELD_OUT_SEED (1000), not ToyWorld's 0, so the episodes are not the layouts demonstrations
    were collected on.
    """
    from dreamgen.toyworld import scene, tasks
    from dreamgen.toyworld.evaluate import evaluate

    policy = LeRobotToyWorldPolicy.from_checkpoint(checkpoint, device=device)
    videos = {} if save_videos is None else {"save_videos": save_videos}
    return evaluate(policy, list(behaviors or tasks.BEHAVIORS), list(envs or scene.ENVIRONMENTS),
                    20 if episodes is None else episodes, seed=HELD_OUT_SEED if seed is None else seed,
                    out_dir=None if out_dir is None else Path(out_dir), **videos)
