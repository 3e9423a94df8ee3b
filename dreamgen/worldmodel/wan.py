"""Wan2.1 image-to-video backbone (`WanImageToVideoPipeline`): loaded from a local diffusers folder.

Training objective: Wan's flow matching. s ~ U(0, 1) warped by the shift used at sampling time,
x_s = (1 - s) x0 + s eps, target eps - x0, timestep 1000 s. The first frame conditions the model the
way the I2V pipeline does it: the VAE latents of [first frame, zeros...] plus a 4-channel first-frame
mask are concatenated to the noisy latents, and CLIP image features (when the checkpoint has an image
encoder, as the 14B I2V models do) go to the image cross-attention. The pipeline has LoRA loading built in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamgen.errors import DreamgenError
from dreamgen.worldmodel import speed
from dreamgen.worldmodel.backbone import Backbone, register_backbone
from dreamgen.worldmodel.config import WorldModelPreset


@register_backbone
class WanI2VBackbone(Backbone):
    kind = "wan_i2v"

    @classmethod
    def build(cls, preset: WorldModelPreset, guardrail: Any = None) -> WanI2VBackbone:
        raise DreamgenError(f"preset {preset.name!r}: Wan2.1 is only fine-tuned from a local checkpoint "
                            "(--init pretrained --pretrained <folder>); use the 'toy' preset to train from scratch")

    @classmethod
    def load(cls, folder: str | Path, preset: WorldModelPreset, guardrail: Any = None,
             torch_dtype: torch.dtype | None = None) -> WanI2VBackbone:
        from diffusers import WanImageToVideoPipeline

        folder = cls.check_folder(folder)
        try:
            pipe = WanImageToVideoPipeline.from_pretrained(str(folder), dtype=torch_dtype,
                                                           local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise DreamgenError(f"{folder}: cannot load the Wan I2V checkpoint ({exc})") from None
        return cls(pipe, preset)

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        x = video.to(self.device).permute(0, 4, 1, 2, 3).to(self.vae.dtype) / 127.5 - 1.0
        lat = self.vae.encode(x).latent_dist.mode().float()
        return self._normalise(lat)

    def _normalise(self, lat: torch.Tensor) -> torch.Tensor:
        cfg = self.vae.config
        mean = torch.tensor(cfg.latents_mean, device=lat.device).view(1, -1, 1, 1, 1)
        std = torch.tensor(cfg.latents_std, device=lat.device).view(1, -1, 1, 1, 1)
        return (lat - mean) / std

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        with torch.no_grad():
            embeds, _ = self.pipe.encode_prompt(prompts, do_classifier_free_guidance=False,
                                                max_sequence_length=self.preset.max_sequence_length,
                                                device=self.device, dtype=torch.float32)
        return embeds

    @torch.no_grad()
    def _image_condition(self, video: torch.Tensor, n_lat: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, t, h, w, _ = video.shape
        first = video[:, 0].to(self.device).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (B, 3, H, W)
        cond_video = torch.cat([first.unsqueeze(2), first.new_zeros(b, 3, t - 1, h, w)], dim=2)
        lat = self._normalise(self.vae.encode(cond_video.to(self.vae.dtype)).latent_dist.mode().float())
        scale = self.pipe.vae_scale_factor_temporal
        mask = torch.zeros(b, 1, t, lat.shape[-2], lat.shape[-1], device=self.device)
        mask[:, :, 0] = 1
        mask = torch.cat([mask[:, :, :1].repeat_interleave(scale, dim=2), mask[:, :, 1:]], dim=2)
        mask = mask.view(b, -1, scale, lat.shape[-2], lat.shape[-1]).transpose(1, 2)
        image_embeds = None
        if getattr(self.pipe, "image_encoder", None) is not None:
            frames = list(video[:, 0].cpu().numpy())
            image_embeds = self.pipe.encode_image(frames, device=self.device).float()
        return torch.cat([mask, lat], dim=1), image_embeds

    def training_loss(self, latents: torch.Tensor, cond: torch.Tensor, video: torch.Tensor | None = None,
                      generator: torch.Generator | None = None, model: torch.nn.Module | None = None) -> torch.Tensor:
        if video is None:
            raise DreamgenError("the Wan I2V loss needs the clip's pixels for its first-frame condition")
        b = latents.shape[0]
        dev = latents.device
        shift = float(self.preset.train.flow_shift)
        u = torch.rand(b, generator=generator).to(dev)
        s = (shift * u / (1 + (shift - 1) * u)).view(b, 1, 1, 1, 1)
        eps = torch.randn(latents.shape, generator=generator).to(dev)
        x_s = (1 - s) * latents + s * eps
        image_cond, image_embeds = self._image_condition(video, latents.shape[2])
        dtype = self.transformer.dtype
        pred = (model or self.transformer)(
            hidden_states=torch.cat([x_s, image_cond], dim=1).to(dtype), timestep=(s.flatten() * 1000).to(dtype),
            encoder_hidden_states=cond.to(dtype),
            encoder_hidden_states_image=None if image_embeds is None else image_embeds.to(dtype),
            return_dict=False)[0]
        return torch.mean((pred.float() - (eps - latents)) ** 2)

    def sample(self, image: np.ndarray, prompt: str, *, negative_prompt: str | None, num_frames: int,
               num_inference_steps: int, guidance_scale: float, seed: int, fps: float,
               fused_cfg: bool = True, height: int | None = None, width: int | None = None) -> np.ndarray:
        from PIL import Image

        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        speed.reset_cache(self.transformer)  # a step cache (speed.py) starts each video afresh
        out = self.pipe(image=Image.fromarray(image), prompt=prompt,
                        negative_prompt=self.preset.negative_prompt if negative_prompt is None else negative_prompt,
                        height=height or image.shape[0], width=width or image.shape[1], num_frames=num_frames,
                        num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                        generator=generator, output_type="np",
                        max_sequence_length=self.preset.max_sequence_length)
        return (np.asarray(out.frames[0]) * 255).round().clip(0, 255).astype(np.uint8)
