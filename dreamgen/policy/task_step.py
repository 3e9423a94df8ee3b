"""The instruction feature as a LeRobot processor step, saved with the policy's preprocessor.

`TaskFeatureStep` turns the batch's `task` strings into `observation.environment_state` with the
policy's `TaskEncoder` settings (task_encoding.py). It is registered with LeRobot's
`ProcessorStepRegistry` as "dreamgen_task_feature" when `dreamgen.policy` is imported, so a checkpoint's
`policy_preprocessor.json` names it with its settings and `PolicyProcessorPipeline.from_pretrained`
re-creates it: a batch of images, state and `task` text is all the policy needs, at training and at
inference. It sits just before the normaliser (which leaves the unit-norm feature as it is).

The feature gets the time axis of the batch's other observations: a training batch of a diffusion
policy has (B, n_obs_steps, ...) observations, an inference batch (B, ...) ones, the policy stacking
its own history.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from lerobot.configs import FeatureType, PipelineFeatureType, PolicyFeature
from lerobot.lerobot_types import EnvTransition, TransitionKey
from lerobot.processor.pipeline import ProcessorStep, ProcessorStepRegistry

from dreamgen.errors import DreamgenError
from dreamgen.policy.task_encoding import DEFAULT_DIM, TASK_FEATURE_KEY, TaskEncoder

log = logging.getLogger(__name__)

STEP_NAME = "dreamgen_task_feature"
_NORMALISER = "normalizer_processor"


def _time_steps(observation: dict[str, Any], key: str) -> tuple[int | None, Any]:
    """(time steps of the batch's observations or None, their device) from the first tensor found."""
    import torch

    for k, v in observation.items():
        if k == key or k.endswith("_is_pad") or not isinstance(v, torch.Tensor) or not v.is_floating_point():
            continue  # padding masks (B, T) have no feature axis
        base = 3 if k.startswith("observation.image") else 1  # one image (C, H, W), one vector (D,)
        return (int(v.shape[1]) if v.ndim == base + 2 else None), v.device
    return None, None


@ProcessorStepRegistry.register(name=STEP_NAME)
@dataclass
class TaskFeatureStep(ProcessorStep):
    """Batch `task` text -> `key` (observation.environment_state): TaskEncoder(kind, dim) features."""

    kind: str = "bow"
    dim: int = DEFAULT_DIM
    key: str = TASK_FEATURE_KEY

    def __post_init__(self) -> None:
        self.encoder = TaskEncoder(self.kind, int(self.dim))
        if not self.encoder.enabled:
            raise DreamgenError(f"{STEP_NAME}: task conditioning {self.kind!r} has no feature to compute")

    def __call__(self, transition: EnvTransition) -> EnvTransition:
        obs = transition.get(TransitionKey.OBSERVATION)
        if not isinstance(obs, dict):
            raise DreamgenError(f"{STEP_NAME}: the batch has no observation to add the instruction feature to")
        task = (transition.get(TransitionKey.COMPLEMENTARY_DATA) or {}).get("task")
        if task is None:
            if self.key in obs:  # already given by the caller
                return transition
            raise DreamgenError(f"{STEP_NAME}: the batch has no 'task' text to compute {self.key} from")
        texts = [task] if isinstance(task, str) else [str(t) for t in task]
        steps, device = _time_steps(obs, self.key)
        new = transition.copy()
        new[TransitionKey.OBSERVATION] = {**obs, self.key: self.encoder.tensor(texts, steps=steps, device=device)}
        return new

    def get_config(self) -> dict[str, Any]:
        return {"kind": self.kind, "dim": int(self.dim), "key": self.key}

    def transform_features(
        self, features: dict[PipelineFeatureType, dict[str, PolicyFeature]]
    ) -> dict[PipelineFeatureType, dict[str, PolicyFeature]]:
        out = dict(features)
        out[PipelineFeatureType.OBSERVATION] = {
            **features.get(PipelineFeatureType.OBSERVATION, {}),
            self.key: PolicyFeature(type=FeatureType.ENV, shape=(int(self.dim),)),
        }
        return out


def task_steps(preprocessor: Any) -> list[TaskFeatureStep]:
    return [s for s in getattr(preprocessor, "steps", []) if isinstance(s, TaskFeatureStep)]


def ensure_task_step(preprocessor: Any, encoder: TaskEncoder) -> bool:
    """Give `preprocessor` the instruction step of `encoder` before its normaliser (checkpoints from
    before the step was saved get it here); True when it was added. A step of other settings is an error."""
    have = task_steps(preprocessor)
    if not encoder.enabled:
        if have:
            raise DreamgenError(f"the policy's preprocessor computes {have[0].get_config()} but the policy was "
                                "trained without an instruction feature")
        return False
    if have:
        if have[0].encoder != encoder:
            raise DreamgenError(f"the policy's preprocessor computes the instruction feature "
                                f"{have[0].get_config()} but the policy was trained with {encoder.to_json()}")
        return False
    steps = list(preprocessor.steps)
    names = [getattr(type(s), "_registry_name", None) for s in steps]
    at = names.index(_NORMALISER) if _NORMALISER in names else len(steps)
    steps.insert(at, TaskFeatureStep(encoder.kind, encoder.dim))
    preprocessor.steps = steps
    saved = getattr(preprocessor, "_serialized_state_filenames", None)
    if saved is not None and len(saved) == len(steps) - 1:  # keep the loaded state files matched to steps
        preprocessor._serialized_state_filenames = (*saved[:at], None, *saved[at:])
    return True
