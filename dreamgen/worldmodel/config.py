"""World-model presets: one YAML per model size (`configs/worldmodel/<name>.yaml`).

A preset names the backbone kind, the architecture (used to build a model from scratch, or
random-weight models for speed benchmarks), the default sampling settings and the training recipe.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dreamgen.errors import DreamgenError

PRESET_DIR = Path(__file__).resolve().parents[2] / "configs" / "worldmodel"

TRAIN_DEFAULTS: dict[str, Any] = {
    "lr": 1e-4,
    "vae_lr": 1e-3,
    "vae_steps": 0,
    "vae_kl_weight": 1e-6,
    "vae_stats_clips": 64,  # clips encoded to measure the trained autoencoder's latent mean/std
    "vae_clip_frames": None,  # frames per autoencoder training clip (1 + 4k); None: whole clips
    "steps": 1000,
    "batch_size": 1,
    "weight_decay": 0.01,
    "warmup_steps": 0,
    "text_dropout": 0.2,
    "sigma_p_mean": 0.0,
    "sigma_p_std": 1.0,
    "sigma_scale_by_frames": True,
    "cond_latent_frames": [1, 2],
    "flow_shift": 5.0,
}


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
    train: dict[str, Any] = field(default_factory=dict)
    lora: dict[str, Any] = field(default_factory=dict)
    source: str = "<memory>"

    def __post_init__(self) -> None:
        self.train = {**TRAIN_DEFAULTS, **(self.train or {})}
        self.lora = {"rank": 16, "alpha": 16, "targets": None, **(self.lora or {})}
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
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name_or_path: str | Path | dict) -> WorldModelPreset:
    """A built-in preset by name (`toy`, `cosmos_predict2_2b`, ...), a YAML file, or a dict."""
    if isinstance(name_or_path, dict):
        return WorldModelPreset.from_dict(name_or_path)
    path = Path(name_or_path)
    if not path.suffix:
        candidate = PRESET_DIR / f"{name_or_path}.yaml"
        if candidate.is_file():
            path = candidate
    if not path.is_file():
        raise DreamgenError(f"unknown world-model preset {str(name_or_path)!r}: not a file and not one of "
                            f"{list_presets()}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise DreamgenError(f"{path}: invalid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise DreamgenError(f"{path}: a preset must be a mapping")
    return WorldModelPreset.from_dict(data, source=str(path))
