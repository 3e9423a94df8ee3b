"""IDM configuration: what the model looks like and what it predicts.

Two kinds. `kind: state` (modeling_state.py) estimates the robot's state in every frame of a clip (a
small CNN per frame, a temporal convolution across frames) plus the action directly; actions the
embodiment derives from states (`action_from_state`) are then taken as differences of consecutive
estimates. `kind: flow` (modeling_idm.py, the reference's design) sees `len(observation_offsets)` frames of one camera (frames t+o for each offset o) and
predicts the normalised action chunk a[t], ..., a[t+H-1] with a flow-matching DiT. The image encoder
is a SigLIP vision tower: loaded from a local transformers folder (`encoder_path`) for real use, or
built from `encoder` (a `SiglipVisionConfig` dict) with random weights for small from-scratch IDMs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from dreamgen import presets
from dreamgen.errors import DreamgenError

# A small from-scratch vision tower: good for 64x64 ToyWorld frames on a CPU.
SMALL_ENCODER = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "patch_size": 8,
}

# The shape of google/siglip2-large-patch16-256 (the reference IDM's encoder), for random-weight
# benchmarks; real runs load the released weights with `encoder_path` instead.
SIGLIP2_LARGE_ENCODER = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "patch_size": 16,
}


IDM_KINDS = ("flow", "state")


@dataclass
class IDMConfig:
    kind: str = "flow"
    action_dim: int = 32
    action_horizon: int = 16
    observation_offsets: list[int] = field(default_factory=lambda: [0, 16])
    image_size: list[int] = field(default_factory=lambda: [256, 256])  # (height, width)
    # image encoder: a local transformers SigLIP folder, or a SiglipVisionConfig dict built from scratch
    encoder_path: str | None = None
    encoder: dict[str, Any] = field(default_factory=lambda: dict(SMALL_ENCODER))
    # keep the last encoder layer out (the reference uses the penultimate layer's features)
    encoder_drop_last_layer: bool = False
    hidden_size: int = 256
    # vision-token mixer (self-attention over both frames' tokens) and the DiT action head
    vl_layers: int = 2
    dit_layers: int = 4
    num_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    # flow matching (the reference's choices: t ~ (s - Beta(1.5, 1)) / s, Euler sampling)
    num_inference_steps: int = 16
    noise_beta_alpha: float = 1.5
    noise_beta_beta: float = 1.0
    noise_s: float = 0.999
    num_timestep_buckets: int = 1000
    # kind "state": per-frame CNN (channels/strides of its conv layers, spatial-softmax keypoints) and a
    # temporal convolution over `clip_length`-frame training clips; state_dim 0 = actions only
    state_dim: int = 0
    cnn_channels: list[int] = field(default_factory=lambda: [32, 64, 128, 128])
    cnn_strides: list[int] = field(default_factory=lambda: [2, 2, 2, 1])
    num_keypoints: int = 32
    temporal_layers: int = 3
    temporal_kernel: int = 5
    clip_length: int = 16
    state_loss_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in IDM_KINDS:
            raise DreamgenError(f"IDM kind must be one of {IDM_KINDS}, got {self.kind!r}")
        if self.kind == "state":
            if len(self.cnn_channels) != len(self.cnn_strides) or not self.cnn_channels:
                raise DreamgenError(f"cnn_channels {self.cnn_channels} and cnn_strides {self.cnn_strides} must be "
                                    "non-empty and of equal length")
            if self.clip_length < 2 or self.temporal_kernel % 2 == 0:
                raise DreamgenError(f"clip_length must be >= 2 and temporal_kernel odd (got {self.clip_length}, "
                                    f"{self.temporal_kernel})")
        self.observation_offsets = [int(o) for o in self.observation_offsets]
        self.image_size = [int(s) for s in self.image_size]
        if len(self.observation_offsets) < 2 or sorted(set(self.observation_offsets)) != self.observation_offsets:
            raise DreamgenError(f"observation_offsets must be >= 2 increasing offsets, got {self.observation_offsets}")
        if self.observation_offsets[0] != 0:
            raise DreamgenError(f"observation_offsets must start at 0, got {self.observation_offsets}")
        if self.action_horizon < 1 or self.action_dim < 1:
            raise DreamgenError(f"action_horizon and action_dim must be >= 1 (got {self.action_horizon}, "
                                f"{self.action_dim})")
        if self.hidden_size % self.num_heads:
            raise DreamgenError(f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}")

    @property
    def num_frames(self) -> int:
        return len(self.observation_offsets)

    @property
    def window(self) -> int:
        """Frames one sample spans: from frame t to the later of the last observation and chunk end (a state
        IDM needs two frames: one action)."""
        if self.kind == "state":
            return 2
        return max(self.observation_offsets[-1], self.action_horizon) + 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<dict>") -> IDMConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise DreamgenError(f"{source}: unknown IDM config field(s) {sorted(unknown)}; known: {sorted(known)}")
        try:
            return cls(**d)
        except TypeError as exc:
            raise DreamgenError(f"{source}: {exc}") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> IDMConfig:
        """A JSON or YAML file (dreamgen/configs/idm/*.yaml presets use YAML)."""
        path = Path(path)
        if not path.is_file():
            raise DreamgenError(f"{path}: IDM config file not found")
        from dreamgen.presets import read_yaml_mapping

        return cls.from_dict(read_yaml_mapping(path, "IDM config fields"), source=str(path))


def resolve_model_config(spec: str | Path | None) -> dict[str, Any]:
    """A preset name under dreamgen/configs/idm/ (e.g. 'toyworld', 'siglip2_large') or a YAML/JSON path -> field dict.

    Returned as a dict so that the embodiment can fill action_dim/offsets/horizon/image_size the
    preset leaves out.
    """
    if spec is None:
        return {}
    path = presets.find_preset("idm", spec)
    if path is None:
        raise DreamgenError(f"IDM model config {spec!r}: no such file and no preset dreamgen/configs/idm/{spec}.yaml")
    data = presets.read_yaml_mapping(path, "IDM config fields")
    known = {f.name for f in fields(IDMConfig)}
    unknown = set(data) - known
    if unknown:
        raise DreamgenError(f"{path}: unknown IDM config field(s) {sorted(unknown)}")
    return data
