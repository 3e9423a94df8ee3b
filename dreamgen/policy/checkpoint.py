"""Load a LeRobot policy checkpoint (`pretrained_model/` folder) with its processors, offline.

`load_policy_checkpoint(path)` accepts a run folder (`OUT`, uses `checkpoints/last`), a step folder
(`OUT/checkpoints/005000`) or the `pretrained_model/` folder itself, checks that every component is
there before loading anything, and returns the policy, its pre/post processors and the embodiment
it was trained for.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dreamgen.embodiments import Embodiment, load_embodiment_folder
from dreamgen.errors import DreamgenError
from dreamgen.io import check_safetensors, read_json
from dreamgen.policy.task_encoding import TASK_FEATURE_KEY, TaskEncoder
from dreamgen.policy.vision import VisionSpec, build_adapted

log = logging.getLogger(__name__)

PREPROCESSOR = "policy_preprocessor.json"
POSTPROCESSOR = "policy_postprocessor.json"


def resolve_policy_folder(path: str | Path) -> Path:
    """The `pretrained_model/` folder meant by a run, step or model folder."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DreamgenError(f"{p}: policy checkpoint does not exist")
    for cand in (p, p / "pretrained_model", p / "checkpoints" / "last" / "pretrained_model"):
        if (cand / "config.json").is_file():
            return cand.resolve()
    raise DreamgenError(
        f"{p}: not a LeRobot policy checkpoint (no config.json here, in pretrained_model/ or in "
        "checkpoints/last/pretrained_model/)"
    )


def check_policy_folder(folder: Path) -> dict[str, Any]:
    """Raise naming the missing/broken component; returns the parsed config.json."""
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise DreamgenError(f"{folder}: missing config.json (policy config)")
    cfg = read_json(cfg_path)
    if "type" not in cfg:
        raise DreamgenError(f"{cfg_path}: no policy 'type' (is this a raw model rather than a LeRobot policy?)")
    weights = [folder / n for n in ("model.safetensors", "adapter_model.safetensors") if (folder / n).is_file()]
    if not weights:
        raise DreamgenError(f"{folder}: missing model.safetensors (policy weights)")
    check_safetensors(weights[0])
    for name in (PREPROCESSOR, POSTPROCESSOR):
        if not (folder / name).is_file():
            raise DreamgenError(f"{folder}: missing {name} (the policy's {name.split('_')[1].split('.')[0]})")
        proc = read_json(folder / name)
        for step in proc.get("steps", []):
            state = step.get("state_file")
            if state and not (folder / state).is_file():
                raise DreamgenError(f"{folder}: missing {state} (normalisation statistics of {name})")
    from dreamgen.policy.families import policy_family

    policy_family(cfg["type"]).check_saved(cfg, cfg_path)
    return cfg


def load_processors(policy_cfg: Any, folder: Path, device: str) -> tuple[Any, Any]:
    from lerobot.policies.factory import make_pre_post_processors

    pre_over: dict[str, Any] = {"device_processor": {"device": device}}
    return make_pre_post_processors(policy_cfg, pretrained_path=str(folder), preprocessor_overrides=pre_over)


@dataclass
class LoadedPolicy:
    policy: Any  # lerobot PreTrainedPolicy, in eval mode
    preprocessor: Any
    postprocessor: Any
    folder: Path
    embodiment: Embodiment | None
    info: dict[str, Any]  # dreamgen_policy.json (datasets, cameras, command), {} for foreign checkpoints

    @property
    def config(self) -> Any:
        return self.policy.config

    @property
    def image_keys(self) -> list[str]:
        from lerobot.configs import FeatureType

        return [k for k, f in self.config.input_features.items() if f.type is FeatureType.VISUAL]

    @property
    def task_encoder(self) -> TaskEncoder:
        """The instruction feature the preprocessor computes (its saved step), else the one
        dreamgen_policy.json names, else "none"."""
        from dreamgen.policy.task_step import task_steps

        steps = task_steps(self.preprocessor)
        return steps[0].encoder if steps else TaskEncoder.from_json(self.info.get("task_conditioning"))

    @property
    def state_key(self) -> str | None:
        from lerobot.configs import FeatureType

        keys = [k for k, f in self.config.input_features.items() if f.type is FeatureType.STATE]
        return keys[0] if keys else None


def load_policy_checkpoint(path: str | Path, device: str | None = None) -> LoadedPolicy:
    """Load policy + processors from a LeRobot checkpoint; nothing is fetched from the hub."""
    folder = resolve_policy_folder(path)
    check_policy_folder(folder)

    import lerobot.policies  # noqa: F401  (registers policy types)
    import torch
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.factory import get_policy_class

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cfg = PreTrainedConfig.from_pretrained(folder, local_files_only=True)
    cfg.device = device
    cfg.pretrained_path = folder
    info_path = folder / "dreamgen_policy.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    vision = VisionSpec.from_info(info)
    if not vision.is_stock:  # an adapted image encoder (vision.py): rebuild, then load
        policy = build_adapted(get_policy_class(cfg.type), cfg, folder, vision)
    else:
        policy = get_policy_class(cfg.type).from_pretrained(folder, config=cfg, local_files_only=True)
    policy.to(device).eval()
    pre, post = load_processors(cfg, folder, device)
    from dreamgen.policy.families import policy_family

    # checkpoints saved before the instruction step existed get it here (None: no dreamgen record, as saved)
    recorded = TaskEncoder.from_json(info["task_conditioning"]) if "task_conditioning" in info else None
    policy_family(cfg.type).prepare_processors(pre, cfg, recorded)
    emb = load_embodiment_folder(folder / "embodiment") if (folder / "embodiment" / "modality.json").is_file() else None
    warn_if_unfinished(folder, info)
    loaded = LoadedPolicy(policy, pre, post, folder, emb, info)
    enc = loaded.task_encoder
    feat = cfg.input_features.get(TASK_FEATURE_KEY)
    if enc.enabled and (feat is None or tuple(feat.shape) != (enc.dim,)):
        raise DreamgenError(f"{folder}: instruction feature {enc.to_json()} but the policy config's "
                            f"{TASK_FEATURE_KEY} input is {feat}")
    if feat is not None and not enc.enabled:
        log.warning("%s: the policy takes %s but neither its preprocessor nor dreamgen_policy.json names a "
                    "task encoder; it will get zeros", folder, TASK_FEATURE_KEY)
    return loaded


def warn_if_unfinished(folder: Path, info: dict[str, Any]) -> bool:
    """Warn when the checkpoint is from a run that stopped before its planned steps (step k of N)."""
    try:
        total = json.loads((folder / "train_config.json").read_text()).get("steps")
    except (OSError, json.JSONDecodeError, AttributeError):
        return False
    step = info.get("step")
    if isinstance(step, int) and isinstance(total, int) and step < total:
        log.warning("%s: checkpoint of an unfinished training run (step %d of %d)", folder, step, total)
        return True
    return False
