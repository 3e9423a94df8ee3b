"""The small interface every world-model backbone implements, and the registry backbones join.

A backbone wraps a diffusers pipeline and adds what training and batch generation need:
build from a preset (scratch) or load from a local diffusers folder, encode videos to the latents the
transformer sees, encode prompts, the training loss of its upstream recipe, and one-video sampling.
A third model is one new module defining a `Backbone` subclass decorated with `@register_backbone`;
`dreamgen.worldmodel.backbones.backbone_class(kind)` finds it by its `kind` (the preset's `backbone`).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from dreamgen.errors import DreamgenError
from dreamgen.io import read_json
from dreamgen.worldmodel.config import WorldModelPreset

MODEL_META = "dreamgen_wm.json"  # written next to every model / LoRA we save: which backbone, which preset


class Backbone(ABC):
    kind: ClassVar[str]
    # subfolders a diffusers checkpoint must have
    pipeline_components: ClassVar[tuple[str, ...]] = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")

    def __init__(self, pipe: Any, preset: WorldModelPreset):
        self.pipe = pipe
        self.preset = preset

    # ----- construction ---------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def build(cls, preset: WorldModelPreset, guardrail: Any = None) -> Backbone:
        """Random-init every component from the preset's architecture (scratch training, benchmarks)."""

    @classmethod
    @abstractmethod
    def load(cls, folder: str | Path, preset: WorldModelPreset, guardrail: Any = None,
             torch_dtype: torch.dtype | None = None) -> Backbone:
        """Load a local diffusers-format checkpoint folder."""

    @classmethod
    def check_folder(cls, folder: str | Path) -> Path:
        folder = Path(folder)
        if not (folder / "model_index.json").is_file():
            raise DreamgenError(f"{folder}: not a diffusers checkpoint folder (no model_index.json)")
        missing = [c for c in cls.pipeline_components if not (folder / c).is_dir()]
        if missing:
            raise DreamgenError(f"{folder}: checkpoint folder is missing components {missing}")
        return folder

    # ----- pieces ---------------------------------------------------------------------------
    @property
    def transformer(self) -> torch.nn.Module:
        return self.pipe.transformer

    @property
    def vae(self) -> torch.nn.Module:
        return self.pipe.vae

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> Backbone:
        self.pipe.to(device)
        if dtype is not None:
            self.transformer.to(dtype)
        return self

    def lora_targets(self) -> list[str]:
        return list(self.preset.lora.targets or [])

    @abstractmethod
    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """uint8 (B, T, H, W, 3) -> normalised latents (B, C, T', h, w) as the transformer sees them."""

    @abstractmethod
    def encode_prompts(self, prompts: list[str]) -> Any:
        """Text conditioning for a batch of prompts (whatever `training_loss` expects)."""

    def dropped_text(self) -> Any:
        """What replaces a dropped prompt in training (classifier-free guidance's unconditional input): the
        empty prompt's encoding, unless a backbone's upstream recipe drops text another way."""
        return self.encode_prompts([""])

    @abstractmethod
    def training_loss(self, latents: torch.Tensor, cond: Any, video: torch.Tensor | None = None,
                      generator: torch.Generator | None = None, model: torch.nn.Module | None = None) -> torch.Tensor:
        """The backbone's upstream training objective on one batch of clean latents. `model` is the
        transformer as wrapped for distributed training (DDP/FSDP), when it is."""

    @abstractmethod
    def sample(self, image: np.ndarray, prompt: str, *, negative_prompt: str | None, num_frames: int,
               num_inference_steps: int, guidance_scale: float, seed: int, fps: float,
               **speed_options: Any) -> np.ndarray:
        """One video (uint8 (T, H, W, 3)) from a first frame (uint8 (H, W, 3)) and a prompt."""

    # ----- saving ---------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {"backbone": self.kind, "preset": self.preset.to_dict(),
                "transformer_config": dict(self.transformer.config)}

    def stock_call(self, prompt: str, *, negative_prompt: str | None, num_frames: int, num_inference_steps: int,
                   guidance_scale: float, fps: float, height: int, width: int) -> dict[str, Any] | None:
        """The keyword arguments with which the stock diffusers pipeline's `__call__` makes the same video
        (plus `seed`: the generator is `torch.Generator("cpu").manual_seed(seed)`), or None if unknown."""
        return None

    def save(self, folder: str | Path) -> Path:
        """A diffusers folder that stock diffusers loads: model_index.json names the stock pipeline class
        (ours only adds LoRA loading and a faster sampling loop), so `DiffusionPipeline.from_pretrained` works."""
        folder = Path(folder)
        self.pipe.save_pretrained(folder, safe_serialization=True)
        stock = next(c for c in type(self.pipe).__mro__ if c.__module__.startswith("diffusers."))
        index = json.loads((folder / "model_index.json").read_text())
        (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": stock.__name__}, indent=2))
        (folder / MODEL_META).write_text(json.dumps(self.meta(), indent=2, default=str))
        return folder


_REGISTRY: dict[str, type[Backbone]] = {}


def register_backbone(cls: type[Backbone]) -> type[Backbone]:
    """Class decorator: make a backbone findable by its `kind`."""
    if cls.kind in _REGISTRY and _REGISTRY[cls.kind] is not cls:
        raise DreamgenError(f"two world-model backbones named {cls.kind!r}: {_REGISTRY[cls.kind]} and {cls}")
    _REGISTRY[cls.kind] = cls
    return cls


def registered_backbone(kind: str) -> type[Backbone]:
    """The backbone registered under `kind` (modules register when imported)."""
    if kind not in _REGISTRY:
        raise DreamgenError(f"unknown world-model backbone {kind!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[kind]


def read_model_meta(folder: str | Path) -> dict[str, Any] | None:
    path = Path(folder) / MODEL_META
    if not path.is_file():
        return None
    return read_json(path)
