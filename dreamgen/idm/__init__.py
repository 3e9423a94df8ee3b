"""IDM stage: convert dreams, preprocess videos, train an inverse dynamics model, label videos with actions.

Heavy modules (torch, transformers) load on first use of the names that need them.
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    "convert_dreams": "dreamgen.idm.convert",
    "plan_conversion": "dreamgen.idm.convert",
    "PreprocessConfig": "dreamgen.idm.preprocess",
    "preprocess_videos": "dreamgen.idm.preprocess",
    "IDMConfig": "dreamgen.idm.configuration_idm",
    "IDM": "dreamgen.idm.modeling_idm",
    "load_idm": "dreamgen.idm.checkpoint",
    "save_checkpoint": "dreamgen.idm.checkpoint",
    "IDMTrainConfig": "dreamgen.idm.train",
    "train_idm": "dreamgen.idm.train",
    "ExtractConfig": "dreamgen.idm.extract",
    "extract_actions": "dreamgen.idm.extract",
    "ensemble_chunks": "dreamgen.idm.extract",
    "label_frames": "dreamgen.idm.extract",
    "label_video": "dreamgen.idm.extract",
    "StateIDM": "dreamgen.idm.modeling_state",
    "build_model": "dreamgen.idm.checkpoint",
    "device_and_autocast": "dreamgen.idm.extract",
    "EvalConfig": "dreamgen.idm.evaluate",
    "evaluate_idm": "dreamgen.idm.evaluate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'dreamgen.idm' has no attribute {name!r}")
