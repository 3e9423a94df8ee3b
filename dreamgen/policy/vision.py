"""A shorter ResNet trunk for LeRobot's diffusion policy image encoder.

LeRobot's `DiffusionRgbEncoder` always keeps a torchvision ResNet up to `layer4` (stride 32, 11M
parameters for ResNet18): on a 96x96 ToyWorld frame that leaves a 3x3 feature map for the spatial
softmax, too coarse to put the gripper within centimetres of an object, and 22 MB per fp16 checkpoint.
`--vision-trunk-layers 2` keeps `conv1 .. layer2` (stride 8, 0.7M parameters: a 12x12 map at 96 px);
3 keeps up to `layer3` (stride 16). LeRobot has no option for this (its config insists on a full ResNet
name), so the cut is applied here, after `make_policy`, and recorded in the checkpoint's
`dreamgen_policy.json` so that `load_policy_checkpoint` rebuilds the same module before loading weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dreamgen.errors import DreamgenError

# children of a torchvision ResNet: conv1, bn1, relu, maxpool, layer1, layer2, layer3, layer4, avgpool, fc
_STEM = 4
VALID_LAYERS = (1, 2, 3, 4)


def _rgb_encoders(policy: Any) -> list[Any]:
    core = getattr(policy, "diffusion", None)
    enc = getattr(core, "rgb_encoder", None)
    if enc is None:
        raise DreamgenError(f"vision_trunk_layers applies to the diffusion policy's image encoder; "
                            f"{type(policy).__name__} has none")
    import torch.nn as nn

    return list(enc) if isinstance(enc, nn.ModuleList) else [enc]


def truncate_vision_trunk(policy: Any, layers: int | None) -> None:
    """Keep the ResNet trunk of every image encoder up to `layer{layers}` and resize its spatial softmax."""
    if layers is None or layers == 4:
        return
    if layers not in VALID_LAYERS:
        raise DreamgenError(f"vision_trunk_layers must be one of {VALID_LAYERS}, got {layers}")
    import torch
    import torch.nn as nn
    from lerobot.policies.diffusion.modeling_diffusion import SpatialSoftmax

    cfg = policy.config
    h, w = cfg.crop_shape or cfg.resize_shape or next(iter(cfg.image_features.values())).shape[1:]
    for enc in _rgb_encoders(policy):
        children = list(enc.backbone.children())
        enc.backbone = nn.Sequential(*children[: _STEM + layers])
        with torch.no_grad():
            device = next(enc.backbone.parameters()).device
            fmap = enc.backbone(torch.zeros(1, 3, h, w, device=device)).shape[1:]
        enc.pool = SpatialSoftmax(tuple(fmap), num_kp=cfg.spatial_softmax_num_keypoints).to(device)


def build_truncated(policy_cls: Any, cfg: Any, folder: Path, layers: int) -> Any:
    """A policy of `policy_cls` with the cut trunk, weights loaded strictly from `folder/model.safetensors`."""
    policy = policy_cls(cfg)
    truncate_vision_trunk(policy, layers)
    return load_truncated_weights(policy, folder, layers)


def load_truncated_weights(policy: Any, folder: Path, layers: int) -> Any:
    """Load `folder/model.safetensors` strictly into a policy whose trunk is already cut (fp16 files too)."""
    from safetensors.torch import load_file

    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise DreamgenError(f"{folder}: no model.safetensors")
    state = load_file(str(weights))
    try:
        policy.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    except RuntimeError as exc:
        raise DreamgenError(f"{weights}: weights do not match a {layers}-layer vision trunk: "
                            f"{str(exc).splitlines()[0]}") from None
    return policy
