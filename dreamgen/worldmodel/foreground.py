"""Foreground pixels of a clip: what moves, as opposed to the static table and wall.

On ToyWorld only ~11% of the pixels of an episode change (the arm, the moved object, shadows): a
reconstruction loss averaged over all pixels lets an autoencoder trade a vanished 8-px cube for a
slightly sharper table, and a PSNR averaged over all pixels mostly scores the background. Both use
one definition here:

    foreground(t, y, x) = max over channels of |frame_t - median frame| > tau
                       or max over channels of |frame_t - first frame|  > tau

(the median over time is the clip's background; the first-frame term keeps pixels that leave their
starting place, which a copy-the-first-frame baseline gets wrong). tau is in [-1, 1] units
(0.1 ~ 13/255, above video-codec noise).

`weighted_recon_loss` up-weights those pixels: weight 1 + fg_weight on foreground, 1 elsewhere, L1 + L2,
normalised by the weight sum so the loss stays on the scale of the plain per-pixel mean (fg_weight 0 is
exactly `l1 + mse`).
"""

from __future__ import annotations

import numpy as np
import torch

DEFAULT_TAU = 0.1  # in [-1, 1] pixel units


def foreground_mask(x: torch.Tensor, tau: float = DEFAULT_TAU) -> torch.Tensor:
    """x: (B, C, T, H, W) in [-1, 1] -> bool (B, 1, T, H, W): pixels that differ from the clip's median frame
    or from its first frame by more than `tau` in some channel."""
    median = x.median(dim=2, keepdim=True).values
    diff = torch.maximum((x - median).abs(), (x - x[:, :, :1]).abs())
    return diff.amax(dim=1, keepdim=True) > tau


def foreground_mask_uint8(video: np.ndarray, tau: float = DEFAULT_TAU) -> np.ndarray:
    """uint8 (T, H, W, 3) -> bool (T, H, W): `foreground_mask` of one clip in numpy layout."""
    x = torch.from_numpy(np.ascontiguousarray(video)).permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0
    return foreground_mask(x, tau)[0, 0].numpy()


def weighted_recon_loss(recon: torch.Tensor, x: torch.Tensor, fg_weight: float = 0.0,
                        tau: float = DEFAULT_TAU) -> torch.Tensor:
    """L1 + L2 reconstruction of (B, C, T, H, W) clips with foreground pixels weighted 1 + fg_weight."""
    err = (recon - x).abs() + (recon - x) ** 2
    if fg_weight <= 0:
        return err.mean()
    w = 1.0 + fg_weight * foreground_mask(x, tau).to(err.dtype)  # (B, 1, T, H, W), broadcast over channels
    return (err * w).sum() / (w.sum() * x.shape[1])


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float | None:
    """PSNR (dB, capped at 100) of uint8 (..., H, W, 3) arrays over the pixels where `mask` (..., H, W) is
    true; None when the mask is empty."""
    if not mask.any():
        return None
    d = a.astype(np.float64)[mask] - b.astype(np.float64)[mask]
    mse = float(np.mean(d ** 2))
    return 100.0 if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))
