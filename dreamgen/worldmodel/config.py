"""World-model presets: one YAML per model size (`dreamgen/configs/worldmodel/<name>.yaml`).

A preset names the backbone kind, the architecture (used to build a model from scratch, or
random-weight models for speed benchmarks), the default sampling settings and the training recipe.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dreamgen import presets
from dreamgen.errors import DreamgenError


def _typed(cls: type, d: dict[str, Any] | Any, source: str, what: str) -> Any:
    """`cls(**d)` naming unknown keys; an instance of `cls` passes through."""
    if isinstance(d, cls):
        return d
    unknown = sorted(set(d or {}) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise DreamgenError(f"{source}: unknown {what} keys {unknown}")
    return cls(**copy.deepcopy(d or {}))


@dataclass
class TrainSettings:
    """The training recipe of a world model (autoencoder phase, then transformer phase)."""

    lr: float = 1e-4
    vae_lr: float = 1e-3
    vae_steps: int = 0
    vae_kl_weight: float = 1e-6
    vae_stats_clips: int = 64  # clips encoded to measure the trained autoencoder's latent mean/std
    vae_clip_frames: int | None = None  # frames per autoencoder training clip (1 + 4k); None: whole clips
    steps: int = 1000
    batch_size: int = 1
    weight_decay: float = 0.01
    warmup_steps: int = 0
    text_dropout: float = 0.2
    sigma_p_mean: float = 0.0
    sigma_p_std: float = 1.0
    sigma_scale_by_frames: bool = True
    cond_latent_frames: list[int] = field(default_factory=lambda: [1, 2])  # drawn uniformly per step
    flow_shift: float = 5.0
    # Cosmos-Predict2.5: the timestep the transformer sees on clean conditioning frames (the diffusers
    # pipeline's 1e-4); negative: the noisy frames' timestep, as upstream pretraining did
    cond_frame_timestep: float = 0.0001
    # autoencoder loss: foreground pixels (worldmodel/foreground.py) weigh 1 + vae_fg_weight (0: plain mean)
    vae_fg_weight: float = 0.0
    vae_batch_size: int | None = None  # clips per autoencoder step (None: batch_size)
    # encode every training clip once after the autoencoder phase (from its first frame) and train the
    # transformer on those latents, kept on the device: the transformer phase never runs the VAE
    precompute_latents: bool = False
    gradient_checkpointing: bool | None = None  # None: on for GPU (the command's flag wins)


@dataclass
class LoraSettings:
    rank: int = 16
    alpha: float = 16
    targets: list[str] | None = None  # module names; None: the backbone's default


@dataclass
class WorldModelPreset:
    name: str
    backbone: str
    pretrained: str | None = None
    guardrail: bool = False
    resolution: list[int] = field(default_factory=lambda: [432, 768])
    num_frames: int = 93
    fps: float = 16
    fps_modulation: bool = False
    max_sequence_length: int = 512
    num_inference_steps: int = 35
    guidance_scale: float = 7.0
    negative_prompt: str | None = None
    transformer: dict[str, Any] = field(default_factory=dict)
    vae: dict[str, Any] = field(default_factory=dict)
    text_encoder: dict[str, Any] = field(default_factory=dict)
    tokenizer: str = "builtin"
    train: TrainSettings = field(default_factory=TrainSettings)
    lora: LoraSettings = field(default_factory=LoraSettings)
    source: str = "<memory>"

    def __post_init__(self) -> None:
        self.train = _typed(TrainSettings, self.train, self.source, "train")
        self.lora = _typed(LoraSettings, self.lora, self.source, "lora")
        if len(self.resolution) != 2 or any(int(v) % 16 for v in self.resolution):
            raise DreamgenError(f"{self.source}: resolution must be [height, width], multiples of 16, "
                                f"got {self.resolution}")
        if self.num_frames < 1 or (self.num_frames - 1) % 4:
            raise DreamgenError(f"{self.source}: num_frames must be 4k+1 (the VAE packs 4 frames per latent "
                                f"after the first), got {self.num_frames}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("source")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<memory>") -> WorldModelPreset:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise DreamgenError(f"{source}: unknown preset keys {unknown}")
        if "name" not in d or "backbone" not in d:
            raise DreamgenError(f"{source}: a preset needs 'name' and 'backbone'")
        return cls(**{**copy.deepcopy(d), "source": source})

    def replace(self, **changes: Any) -> WorldModelPreset:
        return WorldModelPreset.from_dict({**self.to_dict(), **changes}, source=self.source)


def list_presets() -> list[str]:
    return presets.list_presets("worldmodel")


def load_preset(name_or_path: str | Path | dict) -> WorldModelPreset:
    """A built-in preset by name (`toy`, `cosmos_predict2_2b`, ...), a YAML file, or a dict."""
    if isinstance(name_or_path, dict):
        return WorldModelPreset.from_dict(name_or_path)
    path = presets.find_preset("worldmodel", name_or_path)
    if path is None:
        raise DreamgenError(f"unknown world-model preset {str(name_or_path)!r}: not a file and not one of "
                            f"{list_presets()}")
    return WorldModelPreset.from_dict(presets.read_yaml_mapping(path, "world-model preset fields"),
                                      source=str(path))
