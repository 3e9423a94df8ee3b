"""`PolicyTrainConfig`: everything `finetune-policy` needs, checked when made, saved with the run.

LeRobot's own policy settings are not repeated here: they pass through as `lerobot_args`
(`--policy.n_obs_steps=2`) into LeRobot's `TrainPipelineConfig` (see train_setup.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dreamgen.errors import DreamgenError
from dreamgen.policy.mixing import DatasetSpec


@dataclass
class PolicyTrainConfig:
    """Everything `finetune-policy` needs. The first dataset is the real one (its layout is the reference)."""

    datasets: list[DatasetSpec]
    output_dir: Path
    policy: str = "diffusion"
    embodiment: str | None = None  # name, file or folder; default: from the real dataset's meta/
    steps: int = 20_000
    batch_size: int = 32
    seed: int = 1000
    device: str | None = None  # None: cuda when available, else cpu
    num_workers: int = 4
    save_freq: int = 5_000
    log_freq: int = 100
    resume: bool = False
    video_keys: list[str] | None = None  # cameras the policy sees; default: the embodiment's present in all
    use_state: bool = True
    # A LeRobot `pretrained_model/` folder to start from, or for `groot` a GR00T N1.7 base model folder.
    pretrained: str | None = None
    lerobot_args: list[str] = field(default_factory=list)  # e.g. ["--policy.n_obs_steps=2"]
    mixed_precision: str = "no"  # accelerate: no | bf16 | fp16
    command: str | None = None  # the command line that made this run (recorded in checkpoints)
    # Instruction feature (observation.environment_state): "bow" | "none"; None = bow for diffusion/act,
    # none for the rest (VLAs such as groot read the text themselves). See task_encoding.py.
    task_conditioning: str | None = None
    task_dim: int = 128
    # Decode every video once and train from memory: auto (when the frames fit frame_cache_gb) | on | off.
    frame_cache: str = "auto"
    frame_cache_gb: float = 4.0
    # diffusion only: keep the ResNet image trunk up to layer N (1-3; None/4 = LeRobot's full trunk). See vision.py.
    vision_trunk_layers: int | None = None
    # diffusion only: FiLM the trunk's feature map with the instruction feature (needs task_conditioning bow)
    vision_instruction_film: bool = False
    # diffusion only: start the image trunk from this pretrained folder (`dreamgen toyworld pretrain-trunk`:
    # trunk.safetensors + trunk.json); a relative path is looked up in the working directory, then in the dreamgen
    # checkout (the shipped preset's checkpoints/toyworld_trunk). See vision.py.
    vision_pretrained_trunk: str | None = None
    # diffusion only: keep the pretrained trunk's weights fixed (FiLM, keypoint layer and UNet still train)
    vision_freeze_trunk: bool = False
    # diffusion only: the last N spatial-softmax keypoints become instruction-weighted mixes of all keypoints
    vision_attended_keypoints: int = 0
    # diffusion only: the first attended keypoint follows the pretrained trunk's keypoint the instruction names
    # (cosine of the instruction feature with each keypoint name's; needs vision_pretrained_trunk)
    vision_grounded_keypoints: bool = False

    def __post_init__(self) -> None:
        self.output_dir = Path(self.output_dir)
        self.datasets = [d if isinstance(d, DatasetSpec) else DatasetSpec(Path(d)) for d in self.datasets]
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise DreamgenError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.vision_grounded_keypoints and not self.vision_pretrained_trunk:
            raise DreamgenError("vision_grounded_keypoints needs vision_pretrained_trunk (its keypoints have names)")
        if self.vision_freeze_trunk and not self.vision_pretrained_trunk:
            raise DreamgenError("vision_freeze_trunk needs vision_pretrained_trunk (a random trunk would stay random)")
        if self.task_conditioning not in (None, "auto", "bow", "none"):
            raise DreamgenError(f"task_conditioning must be bow or none, got {self.task_conditioning!r}")
        if self.frame_cache not in ("auto", "on", "off"):
            raise DreamgenError(f"frame_cache must be auto, on or off, got {self.frame_cache!r}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise DreamgenError(f"mixed_precision must be no, bf16 or fp16, got {self.mixed_precision!r}")
        for a in self.lerobot_args:
            if not a.startswith("--"):
                raise DreamgenError(f"LeRobot flags are passed as --name=value, got {a!r}")

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["datasets"] = [{"path": str(s.path.resolve()), "weight": s.weight} for s in self.datasets]
        d["output_dir"] = str(self.output_dir)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PolicyTrainConfig:
        d = dict(d)
        d["datasets"] = [DatasetSpec(Path(x["path"]), float(x["weight"])) for x in d["datasets"]]
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
