"""`StateIDM`: the robot's state in every frame of a video, plus the action between frames.

A small CNN encodes each frame once (coordinate channels in, spatial-softmax keypoints + a pooled
descriptor out: positions are what it must read off), a non-causal temporal convolution mixes
neighbouring frames (motion blur, occlusion, the gripper's closing), and two linear heads give the
normalised state and action of every frame. Trained on clips with a masked MSE; any video length
labels in one pass, so each frame is encoded exactly once.

Hand-written because no maintained library ships a per-frame state estimator for robot video at this
size; the flow-matching IDM (modeling_idm.py) remains for real robots with pretrained SigLIP encoders.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from dreamgen.idm.configuration_idm import IDMConfig


class SpatialKeypoints(nn.Module):
    """Soft-argmax keypoints (x, y in [-1, 1]) of `num_kp` learned attention maps."""

    def __init__(self, channels: int, num_kp: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, num_kp, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        logits = self.proj(x).flatten(2)  # (B, K, H*W)
        attn = logits.float().softmax(-1)
        ys = torch.linspace(-1, 1, h, device=x.device)
        xs = torch.linspace(-1, 1, w, device=x.device)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)  # (H*W, 2)
        return (attn @ grid).flatten(1).to(x.dtype)  # (B, 2K)


class FrameEncoder(nn.Module):
    def __init__(self, cfg: IDMConfig) -> None:
        super().__init__()
        layers, c_in = [], 5  # RGB + 2 coordinate channels
        for i, (c, s) in enumerate(zip(cfg.cnn_channels, cfg.cnn_strides, strict=True)):
            k = 5 if i == 0 else 3
            layers += [nn.Conv2d(c_in, c, k, s, k // 2), nn.GroupNorm(min(8, c), c), nn.SiLU()]
            c_in = c
        self.convs = nn.Sequential(*layers)
        self.keypoints = SpatialKeypoints(c_in, cfg.num_keypoints)
        self.out = nn.Sequential(nn.Linear(2 * cfg.num_keypoints + c_in, cfg.hidden_size), nn.SiLU())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> (N, hidden)."""
        x = images.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        n, _, h, w = x.shape
        ys = torch.linspace(-1, 1, h, device=x.device).view(1, 1, h, 1).expand(n, 1, h, w)
        xs = torch.linspace(-1, 1, w, device=x.device).view(1, 1, 1, w).expand(n, 1, h, w)
        f = self.convs(torch.cat([x, xs, ys], 1))
        return self.out(torch.cat([self.keypoints(f), f.mean((2, 3))], 1))


class TemporalBlock(nn.Module):
    def __init__(self, dim: int, kernel: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(1, dim)
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2)
        self.mlp = nn.Conv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, D, T)
        return x + self.mlp(F.silu(self.conv(self.norm(x))))


class StateIDM(nn.Module):
    def __init__(self, config: IDMConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = FrameEncoder(config)
        self.temporal = nn.Sequential(*[TemporalBlock(config.hidden_size, config.temporal_kernel)
                                        for _ in range(config.temporal_layers)])
        self.state_head = nn.Linear(config.hidden_size, config.state_dim) if config.state_dim else None
        self.action_head = nn.Linear(config.hidden_size, config.action_dim)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (..., H, W, 3) at any size -> the config's image size (bilinear, antialiased)."""
        h, w = self.config.image_size
        if tuple(frames.shape[-3:-1]) == (h, w):
            return frames
        lead = frames.shape[:-3]
        x = frames.reshape(-1, *frames.shape[-3:]).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
        return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).reshape(*lead, h, w, 3)

    def predict(self, frames: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """uint8 (B, T, H, W, 3) -> normalised (state (B, T, S) or None, action (B, T, A))."""
        b, t = frames.shape[:2]
        x = self.preprocess(frames)
        feats = self.encoder(x.reshape(b * t, *x.shape[2:]))
        z = self.temporal(feats.view(b, t, -1).transpose(1, 2)).transpose(1, 2)  # (B, T, D)
        state = self.state_head(z) if self.state_head is not None else None
        return state, self.action_head(z)

    def forward(self, frames: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """frames uint8 (B, T, H, W, 3); target (B, T, S + A) normalised [state | action]; mask (B, T) of
        real (not padded) frames. Masked MSE, the state part weighted by `state_loss_weight`."""
        state, action = self.predict(frames)
        s = self.config.state_dim
        m = mask.unsqueeze(-1).float()
        denom = m.sum().clamp(min=1.0)
        loss = (((action.float() - target[..., s:]) ** 2) * m).sum() / (denom * self.config.action_dim)
        if state is not None:
            s_loss = (((state.float() - target[..., :s]) ** 2) * m).sum() / (denom * s)
            loss = loss + self.config.state_loss_weight * s_loss
        return loss
