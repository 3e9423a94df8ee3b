"""Cosmos-Predict2.5 backbone: `CosmosTransformer3DModel` + `AutoencoderKLWan` + a Qwen2.5-VL text encoder.

Training objective (upstream Cosmos-Predict2.5, read from `Cosmos2_5_PredictBasePipeline` and its
`UniPCMultistepScheduler(use_flow_sigmas, prediction_type="flow_prediction")`): rectified flow in plain
flow parameterisation. A noise level s ~ logit-normal(p_mean, p_std), shifted by the flow shift (5:
sigma = 5 s / (1 + 4 s)), gives x_sigma = (1 - sigma) x0 + sigma eps; the transformer sees sigma itself
as its timestep (upstream feeds 1000 sigma with a 0.001 timestep scale) and predicts v = eps - x0, so
the sampler's x0 = x_sigma - sigma v inverts it. Video2World conditioning replaces the first 0-2 latent
frames by their clean latents (marked by the condition-mask channel, at `cond_frame_timestep`), and on
those frames the prediction is replaced by the exact velocity, as the pipeline does while sampling: they
add nothing to the loss, which is the mean over all elements (upstream's normalisation). Text is
dropped with p = 0.2 to zero embeddings (upstream's choice), which gives classifier-free guidance its
unconditional model. Latents are the Wan VAE's, normalised by its mean/std (no extra scale).

Prompts are encoded as the pipeline does: a fixed chat template through Qwen2.5-VL, every hidden layer
but the embeddings normalised and concatenated (28 x 3584 = 100352 channels for the released 7B encoder),
projected to the transformer's width by its `crossattn_proj`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKLWan, CosmosTransformer3DModel, UniPCMultistepScheduler
from diffusers.pipelines.cosmos.pipeline_cosmos2_5_predict import Cosmos2_5_PredictBasePipeline
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

from dreamgen.errors import DreamgenError
from dreamgen.worldmodel.backbone import Backbone, register_backbone
from dreamgen.worldmodel.config import WorldModelPreset
from dreamgen.worldmodel.cosmos2 import (
    Cosmos2Backbone,
    GuardedPipeline,
    GuardrailDisabled,
    _tuples,
    _vae_config,
    build_toy_tokenizer,
    cond_indicator,
    load_guarded,
)

# The chat layout Qwen2.5-VL's own template produces for text-only messages (the pipeline sends a system
# and a user message); enough for the in-code toy tokenizer, which has no template file of its own.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# the words of the pipeline's fixed system prompt and chat roles: single pieces, so a toy prompt stays short
_TEMPLATE_WORDS = ("system", "user", "assistant", "You", "are", "helpful", "who", "will", "provide", "prompts",
                   "image", "generator")


def build_toy_chat_tokenizer() -> Any:
    """The in-code toy tokenizer with the chat template and markers the Predict2.5 pipeline's prompt
    encoding needs (no files, no download). Saved with the pipeline."""
    tokenizer = build_toy_tokenizer(extra_words=_TEMPLATE_WORDS)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_text_encoder(cfg: dict[str, Any], vocab_size: int) -> Qwen2_5_VLForConditionalGeneration:
    """A random-init Qwen2.5-VL from the preset's `text_encoder: {text: ..., vision: ...}` configs."""
    unknown = sorted(set(cfg) - {"text", "vision"})
    if unknown:
        raise DreamgenError(f"text_encoder: unknown keys {unknown} (expected 'text' and 'vision')")
    config = Qwen2_5_VLConfig(text_config={**cfg.get("text", {}), "vocab_size": vocab_size},
                              vision_config=dict(cfg.get("vision", {})))
    return Qwen2_5_VLForConditionalGeneration(config).eval()


def flow_scheduler() -> UniPCMultistepScheduler:
    """The released checkpoints' sampler (diffusers' conversion script): UniPC on Karras sigmas in
    [0.01, 200] mapped to flow sigmas sigma / (1 + sigma), velocity ("flow") prediction. Its tables are
    built on the CPU whatever device context the caller is in: `set_timesteps` reads them with numpy."""
    with torch.device("cpu"):
        return UniPCMultistepScheduler(use_karras_sigmas=True, use_flow_sigmas=True,
                                       prediction_type="flow_prediction", sigma_max=200.0, sigma_min=0.01)


class DreamgenCosmos25Pipeline(GuardedPipeline, Cosmos2_5_PredictBasePipeline):
    """The stock Predict2.5 pipeline (LoRA loading built in) plus a faster sampling loop.

    `generate_video` runs the stock `__call__`'s math (same scheduler, conditioning and guidance formula)
    with the conditional and unconditional guidance passes in one batch (`fused_cfg`), and encodes only
    the conditioning frames (the Wan VAE is causal in time, so their latents do not depend on the
    padding frames the stock call also encodes).
    """

    def conditioning_video(self, image: Any, video: Any, height: int, width: int,
                           num_latent_conditional_frames: int) -> torch.Tensor | None:
        """(1, 3, F, H, W) in [-1, 1]: the frames whose latents stay clean (F = 1 for an image; the last
        4 (n - 1) + 1 frames of a video for n latent frames); None for text-to-world."""
        import torchvision.transforms.functional as TF

        if image is not None:
            return self.video_processor.preprocess_video(TF.to_tensor(image)[None, None], height, width)
        if video is None:
            return None
        if num_latent_conditional_frames not in (1, 2):
            raise DreamgenError(f"num_latent_conditional_frames must be 1 or 2, got {num_latent_conditional_frames}")
        frames = self.video_processor.preprocess_video(video, height, width)
        need = 4 * (num_latent_conditional_frames - 1) + 1
        if frames.shape[2] < need:
            raise DreamgenError(f"a {num_latent_conditional_frames}-latent-frame condition needs {need} video frames, "
                                f"got {frames.shape[2]}")
        return frames[:, :, -need:]

    @torch.no_grad()
    def generate_video(
        self, prompt: str | None, image: Any = None, video: Any = None, negative_prompt: str | None = None,
        height: int = 704, width: int = 1280, num_frames: int = 93, num_inference_steps: int = 35,
        guidance_scale: float = 7.0, generator: torch.Generator | None = None, max_sequence_length: int = 512,
        num_latent_conditional_frames: int = 2, conditional_frame_timestep: float = 0.0001, fused_cfg: bool = True,
        prompt_embeds: torch.Tensor | None = None, negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "np",
    ) -> Any:
        device, dtype, do_cfg, prompt_embeds, negative_prompt_embeds = self._prepare_prompts(
            prompt, negative_prompt, guidance_scale, height, width, prompt_embeds, negative_prompt_embeds,
            max_sequence_length)
        cond_video = self.conditioning_video(image, video, height, width, num_latent_conditional_frames)
        latents, cond_latents, cond_mask, cond_ind = self.prepare_latents(
            None if cond_video is None else cond_video.to(device, self.vae.dtype), 1,
            self.transformer.config.in_channels - 1, height, width,
            0 if cond_video is None else cond_video.shape[2], num_frames, do_cfg, torch.float32, device, generator)
        cond_latents = _pad_frames(cond_latents, latents.shape[2])
        padding_mask = latents.new_zeros(1, 1, height, width, dtype=dtype)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        cond_mask = cond_mask.to(dtype)
        gt_velocity = (latents - cond_latents) * cond_mask  # the exact velocity of the clean frames
        text = torch.cat([prompt_embeds, negative_prompt_embeds]) if do_cfg and fused_cfg else prompt_embeds
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            sigma = self.scheduler.sigmas[i].to(device=device, dtype=torch.float32)
            t_in = (cond_ind * conditional_frame_timestep + (1 - cond_ind) * sigma
                    if conditional_frame_timestep >= 0 else sigma.expand(1))
            x_in = (cond_mask * cond_latents + (1 - cond_mask) * latents).to(dtype)
            if do_cfg and fused_cfg:
                v, v_neg = self._velocity(torch.cat([x_in, x_in]), torch.cat([t_in, t_in]), text,
                                          torch.cat([cond_mask, cond_mask]), padding_mask).chunk(2)
            else:
                v = self._velocity(x_in, t_in, prompt_embeds, cond_mask, padding_mask)
                v_neg = self._velocity(x_in, t_in, negative_prompt_embeds, cond_mask, padding_mask) if do_cfg else None
            v = gt_velocity + v * (1 - cond_mask)
            if v_neg is not None:
                v = v + guidance_scale * (v - (gt_velocity + v_neg * (1 - cond_mask)))
            latents = self.scheduler.step(v, t, latents, return_dict=False)[0]
        if output_type == "latent":
            return latents
        return self._decode(latents, num_frames, device)

    def _velocity(self, x_in, t_in, text, cond_mask, padding_mask) -> torch.Tensor:
        return self.transformer(hidden_states=x_in, timestep=t_in, encoder_hidden_states=text,
                                condition_mask=cond_mask, padding_mask=padding_mask, return_dict=False)[0]

    def _decode(self, latents: torch.Tensor, num_frames: int, device: Any) -> np.ndarray:
        """Normalised latents -> uint8 (T, H, W, 3) frames, through the video guardrail when it is on."""
        latents = latents / self.latents_std.to(latents) + self.latents_mean.to(latents)
        frames = self.vae.decode(latents.to(self.vae.dtype), return_dict=False)[0]
        return self._frames_out(self._match_num_frames(frames, num_frames), device)


def _pad_frames(latents: torch.Tensor, n: int) -> torch.Tensor:
    """Zero latent frames appended up to n (the conditioning latents cover only the clean frames)."""
    if latents.shape[2] >= n:
        return latents
    return torch.cat([latents, latents.new_zeros(*latents.shape[:2], n - latents.shape[2], *latents.shape[3:])], 2)


@register_backbone
class Cosmos25Backbone(Backbone):
    kind = "cosmos_predict2_5"

    @classmethod
    def build(cls, preset: WorldModelPreset, guardrail: Any = None) -> Cosmos25Backbone:
        if preset.tokenizer != "builtin":
            raise DreamgenError(f"{preset.source}: preset {preset.name!r} uses the {preset.tokenizer!r} tokenizer, "
                                "which cannot be built offline; load a checkpoint folder with --pretrained")
        transformer = CosmosTransformer3DModel(**_tuples(preset.transformer))
        tokenizer = build_toy_chat_tokenizer()
        # len(tokenizer) leaves out added special tokens (transformers 5): size the embedding by the ids
        text_encoder = build_text_encoder(preset.text_encoder, max(tokenizer.get_vocab().values()) + 1)
        text = text_encoder.config.text_config
        width = text.num_hidden_layers * text.hidden_size
        want = transformer.config.crossattn_proj_in_channels
        if not transformer.config.use_crossattn_projection or want != width:
            raise DreamgenError(f"{preset.source}: the transformer needs use_crossattn_projection and "
                                f"crossattn_proj_in_channels = text layers x hidden size = {width}, got {want}")
        vae = AutoencoderKLWan(**_vae_config(preset.vae))
        pipe = DreamgenCosmos25Pipeline(text_encoder, tokenizer, transformer, vae, flow_scheduler(),
                                        safety_checker=guardrail)
        return cls(pipe, preset)

    @classmethod
    def load(cls, folder: str | Path, preset: WorldModelPreset, guardrail: Any = None,
             torch_dtype: torch.dtype | None = None) -> Cosmos25Backbone:
        return cls(load_guarded(DreamgenCosmos25Pipeline, cls.check_folder(folder), guardrail, torch_dtype,
                                "Cosmos-Predict2.5", (OSError, ValueError, KeyError, TypeError), first_line=True),
                   preset)

    # ----- data -> model inputs ---------------------------------------------------------------
    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        x = video.to(self.device).permute(0, 4, 1, 2, 3).to(self.vae.dtype) / 127.5 - 1.0
        latents = self.vae.encode(x).latent_dist.mode().float()
        return (latents - self.pipe.latents_mean.to(latents)) * self.pipe.latents_std.to(latents)  # std holds 1/std

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        with torch.no_grad():
            return self.pipe._get_prompt_embeds(prompts, max_sequence_length=self.preset.max_sequence_length,
                                                device=self.device, dtype=torch.float32)

    def dropped_text(self) -> torch.Tensor:
        return torch.zeros_like(self.encode_prompts([""]))

    def training_loss(self, latents: torch.Tensor, cond: torch.Tensor, video: torch.Tensor | None = None,
                      generator: torch.Generator | None = None, model: torch.nn.Module | None = None) -> torch.Tensor:
        tr = self.preset.train
        b, _, n_lat, h, w = latents.shape
        cond_ind = cond_indicator(tr.cond_latent_frames, n_lat, generator, 0, latents.device)
        dev = latents.device
        s = torch.sigmoid(torch.randn(b, generator=generator) * tr.sigma_p_std + tr.sigma_p_mean)
        shift = float(tr.flow_shift)
        sigma = (shift * s / (1 + (shift - 1) * s)).to(dev).view(b, 1, 1, 1, 1)
        eps = torch.randn(latents.shape, generator=generator).to(dev)
        x_in = cond_ind * latents + (1 - cond_ind) * ((1 - sigma) * latents + sigma * eps)
        t_in = sigma.expand(b, 1, n_lat, 1, 1)
        if tr.cond_frame_timestep >= 0:
            t_in = cond_ind * float(tr.cond_frame_timestep) + (1 - cond_ind) * t_in
        dtype = self.transformer.dtype
        v = (model or self.transformer)(
            hidden_states=x_in.to(dtype), timestep=t_in, encoder_hidden_states=cond.to(dtype),
            condition_mask=cond_ind.expand(b, 1, n_lat, h, w).to(dtype),
            padding_mask=torch.zeros(1, 1, h, w, device=dev, dtype=dtype), return_dict=False)[0]
        free = 1 - cond_ind  # clean frames: the pipeline swaps in their exact velocity, so they add no loss
        return torch.mean(((v.float() - (eps - latents)) * free) ** 2)

    # ----- sampling ---------------------------------------------------------------------------
    def sample(self, image: np.ndarray, prompt: str, *, negative_prompt: str | None, num_frames: int,
               num_inference_steps: int, guidance_scale: float, seed: int, fps: float,
               fused_cfg: bool = True, height: int | None = None, width: int | None = None,
               video: np.ndarray | None = None, num_latent_conditional_frames: int = 1) -> np.ndarray:
        """`image` conditions the first latent frame; with `video` (uint8 (T, H, W, 3)) its last
        4 (n - 1) + 1 frames condition the first n = `num_latent_conditional_frames` latent frames instead.
        `fps` does not reach the model: Predict2.5's RoPE has no frame-rate modulation."""
        from PIL import Image

        height = height or image.shape[0]
        width = width or image.shape[1]
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        neg = self.preset.negative_prompt if negative_prompt is None else negative_prompt
        cond = dict(video=[Image.fromarray(f) for f in video]) if video is not None else dict(image=Image.fromarray(image))
        return self.pipe.generate_video(
            prompt, negative_prompt=neg, height=height, width=width, num_frames=num_frames,
            num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, generator=generator,
            max_sequence_length=self.preset.max_sequence_length, fused_cfg=fused_cfg,
            num_latent_conditional_frames=num_latent_conditional_frames,
            conditional_frame_timestep=float(self.preset.train.cond_frame_timestep), **cond)

    # the autoencoder statistics after scratch training: the same Wan VAE config fields as Cosmos2
    set_latent_stats = Cosmos2Backbone.set_latent_stats


def stock_pipeline(backbone: Cosmos25Backbone) -> Cosmos2_5_PredictBasePipeline:
    """The unmodified diffusers pipeline sharing `backbone`'s components (tests and benchmarks compare
    against it). The guardrail is the pass-through opt-out unless the backbone carries a real one."""
    p = backbone.pipe
    return Cosmos2_5_PredictBasePipeline(p.text_encoder, p.tokenizer, p.transformer, p.vae, p.scheduler,
                                         safety_checker=p.safety_checker or GuardrailDisabled())
