"""Find and load a world model from what the user names: a `finetune-wm` output folder, a diffusers
checkpoint folder, or a preset with a `pretrained` path; plus LoRA loading with a compatibility check."""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from dreamgen.errors import DreamgenError
from dreamgen.io import check_safetensors, check_weights_folder
from dreamgen.worldmodel.backbone import Backbone, read_model_meta
from dreamgen.worldmodel.backbones import backbone_class
from dreamgen.worldmodel.config import WorldModelPreset, load_preset

log = logging.getLogger(__name__)

LORA_FILE = "pytorch_lora_weights.safetensors"
LORA_ADAPTER_METADATA_KEY = "lora_adapter_metadata"  # diffusers.loaders.lora_base
_PIPELINE_PRESET = {"Cosmos2VideoToWorldPipeline": "cosmos_predict2_2b",
                    "DreamgenCosmos2Pipeline": "cosmos_predict2_2b",
                    "Cosmos2_5_PredictBasePipeline": "cosmos_predict2_5_2b",
                    "DreamgenCosmos25Pipeline": "cosmos_predict2_5_2b",
                    "WanImageToVideoPipeline": "wan2_1_i2v_14b"}


def resolve_model(model: str | Path, preset: str | None = None) -> tuple[WorldModelPreset, Path, Path | None]:
    """(preset, diffusers folder to load, LoRA file or None) for a model reference."""
    path = Path(model)
    meta = read_model_meta(path) if path.is_dir() else None
    if meta is not None and "mode" in meta:  # a finetune-wm output folder
        p = load_preset(preset) if preset else WorldModelPreset.from_dict(meta["preset"], source=str(path))
        if meta["mode"] == "lora":
            base = Path(meta["base_model"])
            if not base.is_absolute():
                base = path / base
            return p, base, path / meta["lora"]
        return p, path / "model", None
    if path.is_dir():
        if preset:
            p = load_preset(preset)
        elif meta is not None:
            p = WorldModelPreset.from_dict(meta["preset"], source=str(path))
        else:
            index = path / "model_index.json"
            if not index.is_file():
                raise DreamgenError(f"{path}: not a world-model folder (no model_index.json or dreamgen_wm.json)")
            cls = json.loads(index.read_text()).get("_class_name")
            if cls not in _PIPELINE_PRESET:
                raise DreamgenError(f"{path}: pipeline class {cls!r} is not a supported world model; pass --preset")
            p = load_preset(_PIPELINE_PRESET[cls])
        return p, path, None
    p = load_preset(model)
    if not p.pretrained:
        raise DreamgenError(f"preset {p.name!r} has no weights: train one with `dreamgen finetune-wm` "
                            "(--init scratch for the toy preset) or pass a checkpoint folder")
    return p, Path(p.pretrained), None


@contextmanager
def quiet_loading():
    """diffusers and transformers draw a bar per component and per weight file while a pipeline loads, and
    diffusers warns about scheduler settings it ignores: a page of log per model. Errors still show."""
    import diffusers
    import transformers

    libs = (diffusers.utils.logging, transformers.utils.logging)
    levels = [lib.get_verbosity() for lib in libs]
    bars = [lib.is_progress_bar_enabled() for lib in libs]
    for lib in libs:
        lib.set_verbosity_error()
        lib.disable_progress_bar()
    try:
        yield
    finally:
        for lib, level, bar in zip(libs, levels, bars, strict=True):
            lib.set_verbosity(level)
            if bar:
                lib.enable_progress_bar()


def load_world_model(model: str | Path, preset: str | None = None, lora: str | Path | None = None,
                     guardrail: Any = None, device: str | torch.device = "cpu",
                     torch_dtype: torch.dtype | None = None) -> Backbone:
    p, folder, own_lora = resolve_model(model, preset)
    check_weights_folder(folder)  # no pickle ever loads; a damaged safetensors file fails with its name
    with quiet_loading():
        backbone = backbone_class(p.backbone).load(folder, p, guardrail=guardrail, torch_dtype=torch_dtype)
    for lora_path in (own_lora, lora):
        if lora_path is not None:
            load_lora(backbone, lora_path)
    return backbone.to(device)


def lora_file(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / LORA_FILE
    if not path.is_file():
        raise DreamgenError(f"{path}: LoRA weights not found")
    return check_safetensors(path)


def check_lora(backbone: Backbone, path: Path) -> None:
    """Refuse a LoRA made for another backbone (different kind, or layers/shapes this transformer
    lacks) with one clear line, instead of diffusers' warning and a silently unchanged model."""
    meta = read_model_meta(path.parent)
    if meta is not None and meta.get("backbone") not in (None, backbone.kind):
        raise DreamgenError(f"{path}: LoRA was trained for a {meta['backbone']!r} backbone, this model is "
                            f"{backbone.kind!r}")
    modules = dict(backbone.transformer.named_modules())
    try:
        with safe_open(str(path), "pt") as f:
            keys = list(f.keys())
            shapes = {k: f.get_slice(k).get_shape() for k in keys}
    except Exception as exc:
        raise DreamgenError(f"{path}: unreadable safetensors file ({exc})") from None
    if not keys:
        raise DreamgenError(f"{path}: LoRA file holds no weights")
    for key in keys:
        name = key.removeprefix("transformer.")
        for part in (".lora_A.", ".lora_B."):
            if part in name:
                mod_name, kind = name.split(part)[0], part
                break
        else:
            continue
        mod = modules.get(mod_name)
        if mod is None or not hasattr(mod, "in_features"):
            raise DreamgenError(f"{path}: LoRA targets layer {mod_name!r}, which this {backbone.kind} transformer "
                                "lacks (a LoRA from another backbone or size?)")
        shape = shapes[key]
        want = mod.in_features if kind == ".lora_A." else mod.out_features
        got = shape[1] if kind == ".lora_A." else shape[0]
        if got != want:
            raise DreamgenError(f"{path}: LoRA layer {mod_name!r} has width {got}, the model's has {want} "
                                "(a LoRA from another model size?)")


def recorded_adapter(path: Path) -> dict[str, Any] | None:
    """For a LoRA file without diffusers' adapter header (`lora_adapter_metadata`, which dreamgen writes
    since issue 17): the LoraConfig its folder's dreamgen_wm.json records, in diffusers' packed form
    (`transformer.<key>`). Without it diffusers loads alpha = rank: the wrong scale when they differ.
    None when the header is there (diffusers reads it) or nothing is recorded."""
    with safe_open(str(path), "pt") as f:
        if LORA_ADAPTER_METADATA_KEY in (f.metadata() or {}):
            return None
        keys = list(f.keys())
    lora = (((read_model_meta(path.parent) or {}).get("preset") or {}).get("lora")) or {}
    if not lora.get("rank") or not lora.get("alpha"):
        return None
    from peft import LoraConfig

    targets = sorted({k.removeprefix("transformer.").split(".lora_")[0] for k in keys if ".lora_" in k})
    config = LoraConfig(r=int(lora["rank"]), lora_alpha=float(lora["alpha"]), target_modules=targets).to_dict()
    return {f"transformer.{k}": sorted(v) if isinstance(v, set) else v for k, v in config.items()}


def load_lora(backbone: Backbone, path: str | Path, adapter_name: str | None = None) -> None:
    path = lora_file(path)
    check_lora(backbone, path)
    recorded = recorded_adapter(path)
    if recorded is None:
        backbone.pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=adapter_name)
        return
    from safetensors.torch import load_file

    log.info("%s: no adapter header; loading with the rank/alpha dreamgen_wm.json records", path)
    type(backbone.pipe).load_lora_into_transformer(load_file(str(path)), transformer=backbone.transformer,
                                                   adapter_name=adapter_name, _pipeline=backbone.pipe,
                                                   metadata=recorded)
