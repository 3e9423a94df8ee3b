"""World-model stage: fine-tune a video world model (`finetune_world_model`) and dream robot videos
with it (`generate_videos`). Heavy libraries (torch, diffusers) load when these functions are used."""

from __future__ import annotations

from typing import Any

__all__ = [
    "FinetuneConfig",
    "GenerateConfig",
    "evaluate_continuations",
    "finetune_world_model",
    "generate_videos",
    "load_preset",
    "load_world_model",
]

_WHERE = {
    "FinetuneConfig": "dreamgen.worldmodel.finetune",
    "finetune_world_model": "dreamgen.worldmodel.finetune",
    "GenerateConfig": "dreamgen.worldmodel.generate",
    "generate_videos": "dreamgen.worldmodel.generate",
    "evaluate_continuations": "dreamgen.worldmodel.evaluate",
    "load_preset": "dreamgen.worldmodel.config",
    "load_world_model": "dreamgen.worldmodel.loading",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(name)
