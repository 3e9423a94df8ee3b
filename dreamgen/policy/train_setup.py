"""Set-up of a policy training run: the embodiment, LeRobot's training config, the starting weights.

`build_train_config` turns our flags plus the pass-through LeRobot flags (they win) into LeRobot's own
`TrainPipelineConfig`; the rest checks what the run starts from before anything heavy is loaded."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from dreamgen.embodiments import Embodiment, get_embodiment
from dreamgen.errors import DatasetError, DreamgenError
from dreamgen.policy.config import PolicyTrainConfig
from dreamgen.policy.families import policy_family

log = logging.getLogger(__name__)


def resolve_embodiment(spec: str | None, real: Path) -> Embodiment:
    """The embodiment named by `spec`, else the real dataset's own layout (meta/modality.json), else its
    robot type if that is a built-in, else a one-group layout read off the dataset's feature widths."""
    if spec:
        return get_embodiment(spec, dataset=real)
    meta = real / "meta"
    if (meta / "modality.json").is_file():
        return get_embodiment("new_embodiment", dataset=real)
    info = json.loads((meta / "info.json").read_text())
    rt = info.get("robot_type")
    if rt:
        try:
            return get_embodiment(rt)
        except DreamgenError:
            pass
    feats = info.get("features", {})
    cams = [k for k, f in feats.items() if f.get("dtype") in ("video", "image")]
    modality: dict[str, Any] = {"state": {}, "action": {}}
    if "observation.state" in feats:
        modality["state"]["state"] = {"start": 0, "end": int(feats["observation.state"]["shape"][0])}
    if "action" in feats:
        modality["action"]["action"] = {"start": 0, "end": int(feats["action"]["shape"][0])}
    if not cams:
        raise DatasetError(f"{real}: no camera feature; cannot derive an embodiment")
    log.warning("%s: no embodiment given or found; using a layout read off the dataset's features", real)
    return Embodiment(name=rt or real.name, robot_type=rt or real.name, fps=float(info.get("fps", 30)),
                      video_keys=cams, modality=modality, source=str(meta / "info.json"))


def build_train_config(cfg: PolicyTrainConfig, device: str) -> Any:
    """A LeRobot TrainPipelineConfig made from our flags + the pass-through LeRobot flags (they win)."""
    import draccus
    import lerobot.policies  # noqa: F401  (registers every policy type with draccus)
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.configs.train import TrainPipelineConfig

    from dreamgen.data.video import quiet_torchcodec_fallback

    quiet_torchcodec_fallback()  # else LeRobot's choice of decoder may print torchcodec's loading traceback
    known = PreTrainedConfig.get_known_choices()
    if cfg.policy not in known:
        raise DreamgenError(f"unknown policy type {cfg.policy!r}; LeRobot 0.6.1 has: {', '.join(sorted(known))}")
    args = [
        f"--policy.type={cfg.policy}",
        f"--dataset.repo_id=local/{cfg.datasets[0].path.name}",
        f"--dataset.root={cfg.datasets[0].path}",
        f"--output_dir={cfg.output_dir}",
        f"--steps={cfg.steps}",
        f"--batch_size={cfg.batch_size}",
        f"--seed={cfg.seed}",
        f"--num_workers={cfg.num_workers}",
        f"--save_freq={cfg.save_freq}",
        f"--log_freq={cfg.log_freq}",
        f"--policy.device={device}",
        "--policy.push_to_hub=false",
        "--wandb.enable=false",
    ]
    family = policy_family(cfg.policy)
    args += family.lerobot_args(cfg.pretrained)
    try:
        train_cfg = draccus.parse(TrainPipelineConfig, args=args + list(cfg.lerobot_args))
    except SystemExit as exc:  # draccus/argparse report the bad flag on stderr and exit
        raise DreamgenError(f"bad LeRobot flag among {cfg.lerobot_args}: see the message above") from exc
    except (ValueError, TypeError) as exc:
        raise DreamgenError(f"LeRobot config: {exc}") from exc
    family.configure(train_cfg.policy, cfg.pretrained, cfg.lerobot_args)
    if cfg.vision_pretrained_trunk:
        _trunk_backbone(train_cfg.policy, cfg.lerobot_args)
    else:
        _offline_backbone(train_cfg.policy, cfg.lerobot_args)
    if train_cfg.use_policy_training_preset:
        train_cfg.optimizer = train_cfg.policy.get_optimizer_preset()
        train_cfg.scheduler = train_cfg.policy.get_scheduler_preset()
    return train_cfg


def _trunk_backbone(policy_cfg: Any, passed: list[str]) -> None:
    """vision_pretrained_trunk replaces torchvision's weights; its trunk was trained with GroupNorm."""
    if any(a.startswith(("--policy.pretrained_backbone_weights", "--policy.use_group_norm")) for a in passed):
        raise DreamgenError("vision_pretrained_trunk sets the image backbone's weights and GroupNorm; drop "
                            "--policy.pretrained_backbone_weights / --policy.use_group_norm")
    if not hasattr(policy_cfg, "use_group_norm"):
        raise DreamgenError(f"vision_pretrained_trunk applies to the diffusion policy, not {type(policy_cfg).__name__}")
    policy_cfg.pretrained_backbone_weights = None
    policy_cfg.use_group_norm = True


def _offline_backbone(policy_cfg: Any, passed: list[str]) -> None:
    """ACT/diffusion default to torchvision ImageNet weights, which need a download. Without a cached copy
    (and without the user asking for them) train the vision backbone from scratch instead."""
    name = getattr(policy_cfg, "pretrained_backbone_weights", None)
    if not name or any(a.startswith("--policy.pretrained_backbone_weights") for a in passed):
        return
    try:
        import torch
        import torchvision.models as tvm

        enum_name, member = name.split(".")
        url = getattr(getattr(tvm, enum_name), member).url
        cached = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    except Exception:  # unknown spelling: let LeRobot deal with it
        return
    if cached.is_file():
        return
    log.warning("torchvision weights %s are not cached (%s) and cannot be downloaded here: the vision backbone "
                "starts from random weights (pass --policy.pretrained_backbone_weights=... to insist)", name, cached)
    policy_cfg.pretrained_backbone_weights = None
    if hasattr(policy_cfg, "use_group_norm") and not any(a.startswith("--policy.use_group_norm") for a in passed):
        policy_cfg.use_group_norm = True  # LeRobot's recommendation for a backbone trained from scratch


def check_pretrained(cfg: PolicyTrainConfig) -> None:
    """What the run starts from is complete: the family's base model, or a LeRobot pretrained_model/ folder."""
    family = policy_family(cfg.policy)
    if family.pretrained_is_base_model:
        family.check_base_model(cfg.pretrained)
    elif cfg.pretrained:
        from dreamgen.policy.checkpoint import check_policy_folder

        check_policy_folder(Path(cfg.pretrained))


def latest_checkpoint(out: Path) -> Path:
    last = out / "checkpoints" / "last"
    if not last.exists():
        raise DreamgenError(f"{out}: nothing to resume (no checkpoints/last)")
    return last.resolve()

