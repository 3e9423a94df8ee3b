"""Policy stage: train LeRobot policies (GR00T N1.7, diffusion, ACT, ...) on real + neural trajectories
mixed with sampling weights, load checkpoints offline, evaluate them closed-loop in ToyWorld."""

from dreamgen.policy.checkpoint import LoadedPolicy, load_policy_checkpoint
from dreamgen.policy.finetune import PolicyTrainConfig, TrainResult, finetune_policy
from dreamgen.policy.mixing import DatasetSpec, parse_dataset_spec

__all__ = [
    "DatasetSpec",
    "LoadedPolicy",
    "PolicyTrainConfig",
    "TrainResult",
    "finetune_policy",
    "load_policy_checkpoint",
    "parse_dataset_spec",
]
