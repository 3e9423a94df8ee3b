"""Precomputed training latents (`train.precompute_latents`): every training clip is encoded once by the
trained autoencoder (from its first frame: ToyWorld episodes fit in one clip, and dreams start from an
episode's first frame) and kept on the device, so the transformer phase never runs the VAE and a step
costs one transformer forward/backward.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

log = logging.getLogger(__name__)


class LatentBank:
    """Normalised latents (N, C, T, H, W) of all clips with their prompts; `sample` draws a batch."""

    def __init__(self, latents: torch.Tensor, prompts: list[str]):
        if len(latents) != len(prompts):
            raise ValueError("one prompt per latent clip")
        self.latents = latents
        self.prompts = prompts

    def __len__(self) -> int:
        return len(self.prompts)

    @classmethod
    @torch.no_grad()
    def encode(cls, backbone, clips, batch_size: int = 16, dtype: torch.dtype = torch.float32) -> LatentBank:
        """Encode clip i (frames from its start) of every item with `backbone.encode_video`."""
        t0 = time.time()
        chunks = []
        for s in range(0, len(clips), batch_size):
            idx = range(s, min(len(clips), s + batch_size))
            video = torch.from_numpy(np.stack([clips.clip(i, 0) for i in idx]))
            chunks.append(backbone.encode_video(video).to(dtype))
        latents = torch.cat(chunks)
        log.info("precomputed latents of %d clips %s in %.1f s (%.0f MB)", len(clips), tuple(latents.shape[1:]),
                 time.time() - t0, latents.numel() * latents.element_size() / 2 ** 20)
        return cls(latents, [clips.prompt(i) for i in range(len(clips))])

    def sample(self, rng: np.random.Generator, batch_size: int) -> tuple[torch.Tensor, list[str]]:
        idx = rng.integers(len(self), size=batch_size)
        return self.latents[torch.from_numpy(idx).to(self.latents.device)].float(), [self.prompts[i] for i in idx]
