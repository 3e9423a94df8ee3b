"""Self-contained IDM checkpoints (DESIGN §4): everything needed to run the model lives in one folder.

    <ckpt>/model.safetensors      weights
    <ckpt>/config.json            IDMConfig (encoder shape included: no external folder needed)
    <ckpt>/embodiment/            Embodiment.save(): embodiment.yaml + modality.json + stats.json
    <ckpt>/train_state.json       step, command line, train config, validation losses
    <ckpt>/training_state.pt      optimizer/scheduler state for --resume (tensors only: weights_only loads)

Written to a temporary sibling and renamed, so a crash never leaves a folder that looks finished.
"""

from __future__ import annotations

import logging
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from dreamgen.embodiments import Embodiment, load_embodiment_folder
from dreamgen.errors import DreamgenError
from dreamgen.idm.configuration_idm import IDMConfig
from dreamgen.io import check_safetensors, read_json, to_json

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
log = logging.getLogger(__name__)


def save_checkpoint(folder: str | Path, model: torch.nn.Module, embodiment: Embodiment,
                    train_state: dict[str, Any] | None = None,
                    training_state: dict[str, Any] | None = None) -> Path:
    from safetensors.torch import save_file

    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    model.config.save(tmp / "config.json")
    embodiment.save(tmp / "embodiment")
    state = {"command": " ".join(sys.argv), **(train_state or {})}
    (tmp / "train_state.json").write_text(to_json(state, folder / "train_state.json", indent=2, default=str))
    if training_state is not None:
        torch.save(training_state, tmp / "training_state.pt")
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder, or a training run folder (its newest checkpoint-N)."""
    path = Path(path)
    if (path / "model.safetensors").is_file():
        return path
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is not None:
            return found
        if (path / "experiment_cfg").is_dir() or (path / "config.json").is_file():
            raise DreamgenError(f"{path}: not a dreamgen IDM checkpoint (no model.safetensors); reference GR00T "
                                "IDM checkpoints are not loadable")
        raise DreamgenError(f"{path}: no model.safetensors and no checkpoint-N folder inside")
    raise DreamgenError(f"{path}: checkpoint folder not found")


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in run_dir.iterdir()
             if (m := CHECKPOINT_RE.match(p.name)) and (p / "model.safetensors").is_file()]
    return max(found)[1] if found else None


def build_model(config: IDMConfig) -> torch.nn.Module:
    """The IDM module of `config.kind`: a per-frame state estimator or the flow-matching chunk predictor."""
    if config.kind == "state":
        from dreamgen.idm.modeling_state import StateIDM

        return StateIDM(config)
    from dreamgen.idm.modeling_idm import IDM

    return IDM(config)


def load_idm(path: str | Path, device: str | torch.device = "cpu"):
    """-> (IDM in eval mode, Embodiment, train_state dict). Only safetensors weights are read."""
    from safetensors.torch import load_file

    ckpt = find_checkpoint(path)
    for name in ("config.json", "embodiment"):
        if not (ckpt / name).exists():
            raise DreamgenError(f"{ckpt}: incomplete checkpoint, {name} missing")
    cfg_dict = read_json(ckpt / "config.json")
    cfg_dict["encoder_path"] = None  # the encoder shape is in `encoder`; its weights are in ours
    config = IDMConfig.from_dict(cfg_dict, source=str(ckpt / "config.json"))
    embodiment = load_embodiment_folder(ckpt / "embodiment")
    model = build_model(config)
    weights = {k: v.float() if v.is_floating_point() else v
               for k, v in load_file(str(check_safetensors(ckpt / "model.safetensors"))).items()}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise DreamgenError(f"{ckpt}: weights do not match the config (missing {missing[:3]}, "
                            f"unexpected {unexpected[:3]})")
    state_path = ckpt / "train_state.json"
    state = read_json(state_path) if state_path.is_file() else {}
    warn_if_unfinished(ckpt, state)
    return model.to(device).eval(), embodiment, state


def warn_if_unfinished(ckpt: Path, state: dict[str, Any]) -> bool:
    """Warn when a checkpoint comes from a run that had not reached its max_steps (step k of N)."""
    step = state.get("step")
    total = (state.get("train_config") or {}).get("max_steps")
    if isinstance(step, int) and isinstance(total, int) and step < total:
        log.warning("%s: checkpoint of an unfinished training run (step %d of %d); results may be poor",
                    ckpt, step, total)
        return True
    return False
