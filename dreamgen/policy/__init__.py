"""Policy stage: train LeRobot policies (GR00T N1.7, diffusion, ACT, ...) on real + neural trajectories
mixed with sampling weights, load checkpoints offline, evaluate them closed-loop in ToyWorld.

Importing this package registers the instruction-feature processor step ("dreamgen_task_feature",
task_step.py) with LeRobot, so `PolicyProcessorPipeline.from_pretrained` can re-create a saved
preprocessor that has it."""

from dreamgen.policy.checkpoint import LoadedPolicy, load_policy_checkpoint
from dreamgen.policy.finetune import PolicyTrainConfig, TrainResult, finetune_policy
from dreamgen.policy.mixing import DatasetSpec, parse_dataset_spec
from dreamgen.policy.task_step import STEP_NAME as TASK_STEP_NAME
from dreamgen.policy.task_step import TaskFeatureStep

__all__ = [
    "DatasetSpec",
    "LoadedPolicy",
    "PolicyTrainConfig",
    "TASK_STEP_NAME",
    "TaskFeatureStep",
    "TrainResult",
    "finetune_policy",
    "load_policy_checkpoint",
    "parse_dataset_spec",
]
