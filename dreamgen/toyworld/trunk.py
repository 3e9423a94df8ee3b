"""Pretrain a policy's image trunk on ToyWorld: the stand-in for the ImageNet weights a real robot policy
starts from (nothing can be downloaded here, and LeRobot's diffusion policy would otherwise train its
ResNet from scratch through the denoising loss alone).

Measured on ToyWorld v2 (benchmarks/RESULTS.md, "Round 3"): a diffusion policy trained from scratch on 200
pick_place demos heads for the named object no better than chance, and its image features hold the target's
direction no better than a randomly initialised encoder's; 200 reach decisions are too little signal to
teach a ResNet where coloured objects are. Here the same trunk (LeRobot's `DiffusionRgbEncoder` backbone:
torchvision ResNet18, BatchNorm replaced by GroupNorm, cut after `layer{layers}` as `vision_trunk_layers`
cuts it) learns to find every object, the plate, the bin and the gripper (keypoints.py) in frames of the
*prior's* arm styles (never the target arm), all behaviors and environments, seeds disjoint from demos:
a 1x1 convolution + spatial soft-argmax per keypoint on its feature map, L1 loss on normalised coordinates,
random crops as the policy's. The policy loads the trunk weights with `vision_pretrained_trunk` and
fine-tunes them (policy/vision.py); the head is dropped.

Output folder: `trunk.safetensors` (`trunk.*`: the trunk's state dict, keys as in the policy's `backbone`;
`head.*`: the keypoint 1x1 convolution, which seeds the first keypoints of the policy's spatial softmax) and
`trunk.json` (recipe, held-out keypoint error in pixels).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dreamgen.errors import DreamgenError

log = logging.getLogger(__name__)
_STEM = 4  # conv1, bn1, relu, maxpool


@dataclass
class TrunkConfig:
    out: str
    arm_styles: list[str] = field(default_factory=lambda: ["blue_box", "floating"])
    behaviors: list[str] = field(default_factory=lambda: ["all"])
    envs: list[str] = field(default_factory=lambda: ["all"])
    episodes: int = 40  # per (arm style, behavior, environment)
    held_out_episodes: int = 4
    seed: int = 50_000  # far from demo (0-2), evaluation (1000+) and prior (100-101) seeds
    image_size: int = 96
    crop: int = 90  # the policy's crop_shape
    layers: int = 2  # the policy's vision_trunk_layers
    steps: int = 3000
    batch_size: int = 256
    lr: float = 1e-3
    device: str = "auto"
    workers: int = 1


def build_trunk(layers: int):
    """LeRobot's diffusion image backbone (ResNet18, GroupNorm) cut after `layer{layers}`."""
    import torch.nn as nn
    import torchvision

    if layers not in (1, 2, 3, 4):
        raise DreamgenError(f"trunk layers must be 1-4, got {layers}")
    model = torchvision.models.resnet18(weights=None)
    trunk = nn.Sequential(*list(model.children())[: _STEM + layers])

    def group_norm(module: nn.Module) -> None:  # as LeRobot's use_group_norm does
        for name, child in module.named_children():
            if isinstance(child, nn.BatchNorm2d):
                setattr(module, name, nn.GroupNorm(child.num_features // 16, child.num_features))
            else:
                group_norm(child)

    group_norm(trunk)
    return trunk


class _KeypointNet:
    """trunk -> 1x1 conv -> spatial soft-argmax: (B, 3, h, w) normalised images -> (B, K, 2) in [-1, 1]."""

    @staticmethod
    def build(layers: int, crop: int, k: int):
        import torch
        from lerobot.policies.diffusion.modeling_diffusion import SpatialSoftmax

        trunk = build_trunk(layers)
        with torch.no_grad():
            shape = tuple(trunk(torch.zeros(1, 3, crop, crop)).shape[1:])
        return torch.nn.Sequential(trunk, SpatialSoftmax(shape, num_kp=k)), shape


def pixels_to_grid(points: np.ndarray, crop: int, fmap: int) -> np.ndarray:
    """(row, col) pixels of a crop -> SpatialSoftmax's (x, y) in [-1, 1], where -1/+1 are the centres of the
    first/last feature-map cells (stride crop/fmap)."""
    stride = crop / fmap
    cells = (points[..., ::-1] + 0.5) / stride - 0.5  # (col, row) in cell units
    return (cells / (fmap - 1) * 2 - 1).astype(np.float32)


def grid_to_pixels(grid: np.ndarray, crop: int, fmap: int) -> np.ndarray:
    """The inverse of pixels_to_grid: SpatialSoftmax (x, y) -> (row, col) pixels of the crop."""
    cells = (np.asarray(grid, dtype=np.float64) + 1) / 2 * (fmap - 1)
    return ((cells + 0.5) * (crop / fmap) - 0.5)[..., ::-1]


def _batch(frames, points, idx, crop: int, fmap: int, rng, random_crop: bool, mean, std):
    import torch

    size = frames.shape[1]
    if random_crop:
        dr, dc = rng.integers(0, size - crop + 1, 2)
    else:
        dr = dc = (size - crop) // 2
    x = torch.from_numpy(frames[idx, dr:dr + crop, dc:dc + crop]).permute(0, 3, 1, 2).float() / 255.0
    x = (x - mean) / std
    y = torch.from_numpy(pixels_to_grid(points[idx] - np.array([dr, dc], np.float32), crop, fmap))
    return x, y


def train_trunk(cfg: TrunkConfig, progress: bool = True) -> dict[str, Any]:
    """Render the labelled frames, train, measure the held-out keypoint error, write the folder."""
    import torch
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from dreamgen.toyworld.keypoints import KEYPOINT_NAMES, render_keypoint_frames
    from dreamgen.toyworld.scene import ARM_STYLES, ENVIRONMENTS
    from dreamgen.toyworld.tasks import BEHAVIORS, check_name

    arms = [check_name("arm_style", a, list(ARM_STYLES)) for a in cfg.arm_styles]
    if "default" in arms:
        raise DreamgenError("the trunk is pretrained on the prior's arm styles; 'default' is the target arm")
    behaviors = list(BEHAVIORS) if cfg.behaviors == ["all"] else [check_name("behavior", b, list(BEHAVIORS))
                                                                  for b in cfg.behaviors]
    envs = list(ENVIRONMENTS) if cfg.envs == ["all"] else [check_name("environment", e, list(ENVIRONMENTS))
                                                           for e in cfg.envs]
    if not (cfg.crop <= cfg.image_size and cfg.steps >= 1 and cfg.episodes >= 1):
        raise DreamgenError("need crop <= image size, steps >= 1 and episodes >= 1")
    t0 = time.time()
    frames, points = render_keypoint_frames(arms, behaviors, envs, cfg.episodes, cfg.seed, cfg.image_size,
                                            cfg.workers)
    test_frames, test_points = render_keypoint_frames(arms, behaviors, envs, cfg.held_out_episodes,
                                                      cfg.seed + 1, cfg.image_size, cfg.workers)
    log.info("rendered %d training and %d held-out frames in %.0f s", len(frames), len(test_frames),
             time.time() - t0)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)
    net, shape = _KeypointNet.build(cfg.layers, cfg.crop, len(KEYPOINT_NAMES))
    net = net.to(device)
    mean = torch.tensor(frames.reshape(-1, 3).mean(0) / 255.0, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(frames.reshape(-1, 3).std(0) / 255.0 + 1e-6, dtype=torch.float32).view(1, 3, 1, 1)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps, pct_start=0.05)
    rng = np.random.default_rng(cfg.seed)
    bar = tqdm(range(cfg.steps), desc="trunk", disable=not progress, mininterval=5.0)
    for _ in bar:
        idx = rng.integers(0, len(frames), min(cfg.batch_size, len(frames)))
        x, y = _batch(frames, points, idx, cfg.crop, shape[1], rng, True, mean, std)
        loss = (net(x.to(device)) - y.to(device)).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    metrics = evaluate_keypoints(net, test_frames, test_points, cfg.crop, shape[1], mean, std, device)
    metrics["train_frames"], metrics["seconds"] = len(frames), round(time.time() - t0, 1)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    state = {f"trunk.{k}": v.detach().cpu().contiguous() for k, v in net[0].state_dict().items()}
    state.update({f"head.{k}": v.detach().cpu().contiguous() for k, v in net[1].nets.state_dict().items()})
    save_file(state, str(out / "trunk.safetensors"))
    info = {"format": "dreamgen-trunk-1", "recipe": asdict(cfg), "keypoints": list(KEYPOINT_NAMES),
            "feature_map": list(shape), "image_mean": mean.flatten().tolist(), "image_std": std.flatten().tolist(),
            "held_out": metrics}
    (out / "trunk.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def evaluate_keypoints(net, frames, points, crop: int, fmap: int, mean, std, device) -> dict[str, Any]:
    """Held-out error in pixels (centre crop) per keypoint: median and share within 3 px (the grasp radius)."""
    import torch

    from dreamgen.toyworld.keypoints import KEYPOINT_NAMES

    net.eval()
    preds = []
    with torch.no_grad():
        for i in range(0, len(frames), 512):
            idx = np.arange(i, min(i + 512, len(frames)))
            x, _ = _batch(frames, points, idx, crop, fmap, None, False, mean, std)
            preds.append(net(x.to(device)).float().cpu().numpy())
    net.train()
    off = (frames.shape[1] - crop) // 2
    err = np.linalg.norm(grid_to_pixels(np.concatenate(preds), crop, fmap) + off - points, axis=-1)  # (N, K)
    return {"frames": len(frames),
            "median_px": {n: round(float(np.median(err[:, k])), 2) for k, n in enumerate(KEYPOINT_NAMES)},
            "within_3px": {n: round(float((err[:, k] <= 3).mean()), 3) for k, n in enumerate(KEYPOINT_NAMES)}}
