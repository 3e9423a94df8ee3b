"""Cosmos-Predict2 Video2World backbone: `CosmosTransformer3DModel` + `AutoencoderKLWan` + T5.

Training objective (upstream Cosmos-Predict2): rectified flow written in EDM-style
preconditioning. A noise level sigma ~ exp(N(p_mean, p_std)) (times sqrt(latent frames) as upstream
does for long videos) gives t = sigma / (1 + sigma); the transformer sees x_t = (1 - t) x0 + t eps on
the generated frames and the clean latents on the first 1-2 conditioning frames (marked by the
condition-mask channel, at the pipeline's conditioning timestep), and predicts v = eps - x0. That is
exactly what the stock pipeline's sampler inverts (x0 = x_t - t v), so a model trained here samples
with the stock pipeline unchanged. Text is dropped (replaced by the empty prompt) with p = 0.2 so
classifier-free guidance has an unconditional model to compare with.
"""

from __future__ import annotations

import logging
import string
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKLWan, CosmosTransformer3DModel, FlowMatchEulerDiscreteScheduler
from diffusers.loaders import CosmosLoraLoaderMixin
from diffusers.pipelines.cosmos.pipeline_cosmos2_video2world import (
    Cosmos2VideoToWorldPipeline,
    retrieve_timesteps,
)
from transformers import T5Config, T5EncoderModel, T5TokenizerFast

from dreamgen.errors import DreamgenError
from dreamgen.worldmodel import speed
from dreamgen.worldmodel.backbone import Backbone, register_backbone
from dreamgen.worldmodel.config import WorldModelPreset

log = logging.getLogger(__name__)

SIGMA_CONDITIONING = 0.0001  # the stock pipeline's noise level for conditioning frames

# Words the ToyWorld / robot prompts use, so they tokenise to one id each; anything else falls back to
# characters (every printable ASCII character is in the vocabulary, so no prompt maps to <unk> only).
_COMMON_WORDS = (
    "the a an robot arm is performing task pick place put push move open close lift stack the on in into to "
    "of and from red green blue yellow cube block ball bowl plate drawer cup left right top bottom table "
    "gripper it up down onto near next behind front pour grasp slide rotate turn"
).split()


def build_toy_tokenizer(extra_words: tuple[str, ...] = ()) -> T5TokenizerFast:
    """A small Unigram T5 tokenizer made in code (no files, no download). Saved with the pipeline.
    `extra_words` become single pieces too (after the common words, so the default vocabulary is unchanged)."""
    vocab: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    seen = set()
    for w in dict.fromkeys((*_COMMON_WORDS, *extra_words)):
        for piece in ("\u2581" + w, "\u2581" + w.capitalize()):
            if piece not in seen:
                seen.add(piece)
                vocab.append((piece, -2.0))
    for ch in string.ascii_letters + string.digits + string.punctuation:
        vocab.append(("\u2581" + ch, -8.0))
        vocab.append((ch, -9.0))
    vocab.append(("\u2581", -10.0))
    return T5TokenizerFast(vocab=vocab, extra_ids=0)


class GuardrailDisabled:
    """The explicit opt-out object (`--disable-guardrail`): passes every prompt and video unchanged.

    The stock constructor insists on `cosmos_guardrail` and the stock `__call__` refuses to run
    without a checker; this object satisfies both. Our own pipeline stores `None` instead, so saved
    checkpoints carry no reference to it.
    """

    def to(self, *args: Any, **kwargs: Any) -> GuardrailDisabled:
        return self

    def check_text_safety(self, prompt: str) -> bool:
        return True

    def check_video_safety(self, frames: np.ndarray) -> np.ndarray:
        return frames


def make_guardrail(enabled: bool) -> Any:
    """The real Cosmos safety checker, or None when the user opted out. Raises a clear error if the
    guardrail is wanted but unavailable."""
    if not enabled:
        return None
    try:
        from cosmos_guardrail import CosmosSafetyChecker  # noqa: PLC0415
    except ImportError:
        raise DreamgenError(
            "Cosmos models run with NVIDIA's guardrail, but `cosmos_guardrail` is not installed. Install it "
            "(pip install cosmos_guardrail; it downloads its own models) or pass --disable-guardrail to opt "
            "out explicitly."
        ) from None
    try:
        return CosmosSafetyChecker()
    except Exception as exc:  # its model download fails offline
        raise DreamgenError(f"cosmos_guardrail could not load its models ({exc}); pass --disable-guardrail "
                            "to opt out explicitly") from None


class GuardedPipeline:
    """What our Cosmos pipelines (Predict2 and Predict2.5) share around their sampling loops: the optional
    guardrail (None = opted out, never saved), the prompt check and encoding before the loop, and the
    uint8 frames through the video check after it. Mixed in before the stock pipeline class."""

    def __init__(self, text_encoder, tokenizer, transformer, vae, scheduler, safety_checker=None):
        super().__init__(text_encoder, tokenizer, transformer, vae, scheduler,
                         safety_checker=safety_checker if safety_checker is not None else GuardrailDisabled())
        if safety_checker is None:
            self.register_modules(safety_checker=None)

    def _prepare_prompts(self, prompt, negative_prompt, guidance_scale, height, width, prompt_embeds,
                         negative_prompt_embeds, max_sequence_length):
        """(device, transformer dtype, whether guidance runs, positive and negative prompt embeddings), after
        the stock input checks and the guardrail's text check (when it is on)."""
        device = self._execution_device
        do_cfg = guidance_scale > 1.0
        self.check_inputs(prompt if prompt_embeds is None else None, height, width, prompt_embeds)
        if self.safety_checker is not None and prompt is not None:
            self.safety_checker.to(device)
            if not self.safety_checker.check_text_safety(prompt):
                raise DreamgenError(f"Cosmos guardrail rejected the prompt {prompt!r}")
            self.safety_checker.to("cpu")
        embeds = self.encode_prompt(
            prompt=prompt if prompt_embeds is None else None, negative_prompt=negative_prompt,
            do_classifier_free_guidance=do_cfg, prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds, device=device, max_sequence_length=max_sequence_length,
        )
        return device, self.transformer.dtype, do_cfg, *embeds

    def _frames_out(self, frames: torch.Tensor, device: Any) -> np.ndarray:
        """Decoded video -> uint8 (T, H, W, 3) frames, through the video guardrail when it is on."""
        frames = self.video_processor.postprocess_video(frames, output_type="np")[0]  # (T, H, W, 3) in [0, 1]
        frames = (frames * 255).round().clip(0, 255).astype(np.uint8)
        if self.safety_checker is not None:
            self.safety_checker.to(device)
            frames = self.safety_checker.check_video_safety(frames)
            self.safety_checker.to("cpu")
        self.maybe_free_model_hooks()
        return frames


def load_guarded(pipeline_cls: type, folder: Path, guardrail: Any, torch_dtype: torch.dtype | None, what: str,
                 errors: tuple[type[Exception], ...] = (OSError, ValueError, KeyError), first_line: bool = False) -> Any:
    """`pipeline_cls.from_pretrained(folder)` offline, with `guardrail` (None: opted out, stored as None); a
    failure in `errors` becomes a DreamgenError naming the `what` checkpoint (the reason's first line only
    with `first_line`)."""
    try:
        pipe = pipeline_cls.from_pretrained(
            str(folder), safety_checker=guardrail if guardrail is not None else GuardrailDisabled(),
            dtype=torch_dtype, local_files_only=True)
    except errors as exc:
        reason = (str(exc).splitlines()[0] if str(exc) else type(exc).__name__) if first_line else exc
        raise DreamgenError(f"{folder}: cannot load the {what} checkpoint ({reason})") from None
    if guardrail is None:
        pipe.register_modules(safety_checker=None)
    return pipe


class DreamgenCosmos2Pipeline(GuardedPipeline, Cosmos2VideoToWorldPipeline, CosmosLoraLoaderMixin):
    """The stock Video2World pipeline plus LoRA loading and a faster sampling loop.

    `generate_video` runs the same math as the stock `__call__` (same scheduler, preconditioning and
    guidance formula) with switchable speed-ups: the conditional and unconditional passes of
    classifier-free guidance in one batch (`fused_cfg`), and no float32 round trips of the
    prediction between steps.
    """

    @torch.no_grad()
    def generate_video(
        self, image: Any, prompt: str, negative_prompt: str | None = None, height: int = 704, width: int = 1280,
        num_frames: int = 93, num_inference_steps: int = 35, guidance_scale: float = 7.0, fps: float | None = 16,
        generator: torch.Generator | None = None, max_sequence_length: int = 512, fused_cfg: bool = True,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None, output_type: str = "np",
    ) -> Any:
        device, dtype, do_cfg, prompt_embeds, negative_prompt_embeds = self._prepare_prompts(
            prompt, negative_prompt, guidance_scale, height, width, prompt_embeds, negative_prompt_embeds,
            max_sequence_length)
        sigmas = torch.linspace(0, 1, num_inference_steps, dtype=torch.float64)
        timesteps, num_inference_steps = retrieve_timesteps(self.scheduler, device=device, sigmas=sigmas)
        if self.scheduler.config.final_sigmas_type == "sigma_min":
            self.scheduler.sigmas[-1] = self.scheduler.sigmas[-2]

        video = self.video_processor.preprocess(image, height, width).unsqueeze(2).to(device, self.vae.dtype)
        latents, cond_latents, cond_ind, _, cond_mask, _ = self.prepare_latents(
            video, 1, self.transformer.config.in_channels - 1, height, width, num_frames, False,
            torch.float32, device, generator, None)
        cond_mask = cond_mask.to(dtype)
        padding_mask = latents.new_zeros(1, 1, height, width, dtype=dtype)
        t_cond = SIGMA_CONDITIONING / (SIGMA_CONDITIONING + 1)
        # FasterCache (speed.py) expects the CFG batch as [uncond, cond]; our default order is [cond, uncond]
        uncond_first = speed.cache_kind(self.transformer) == "faster"
        if uncond_first and not (do_cfg and fused_cfg):
            raise DreamgenError("--cache faster skips the unconditional half of a fused CFG batch: it needs "
                                "guidance > 1 and --fused-cfg")
        if do_cfg and fused_cfg:
            pair = [negative_prompt_embeds, prompt_embeds] if uncond_first else [prompt_embeds, negative_prompt_embeds]
            text = torch.cat(pair).to(dtype)
            mask_in = torch.cat([cond_mask, cond_mask])
        speed.reset_cache(self.transformer)
        for i, t in enumerate(self.progress_bar(timesteps)):
            sigma = self.scheduler.sigmas[i]
            cur_t = sigma / (sigma + 1)
            x_in = (cond_ind * cond_latents + (1 - cond_ind) * latents * (1 - cur_t)).to(dtype)
            t_in = (cond_ind * t_cond + (1 - cond_ind) * cur_t).to(dtype)
            step = dict(step=i, num_steps=len(timesteps), t=float(cur_t))
            if do_cfg and fused_cfg:
                with speed.step_context(self.transformer, "cfg", **step):
                    v = self.transformer(hidden_states=torch.cat([x_in, x_in]), timestep=torch.cat([t_in, t_in]),
                                         encoder_hidden_states=text, fps=fps, condition_mask=mask_in,
                                         padding_mask=padding_mask, return_dict=False)[0]
                v_cond, v_uncond = v.float().chunk(2)
                if uncond_first:
                    v_cond, v_uncond = v_uncond, v_cond
            else:
                v_cond, v_uncond = self._velocities(x_in, t_in, fps, cond_mask, padding_mask, prompt_embeds.to(dtype),
                                                    negative_prompt_embeds.to(dtype) if do_cfg else None, step)
            # x0 predictions (the stock pipeline rounds them to the transformer dtype; we keep float32)
            x0 = (1 - cur_t) * latents - cur_t * v_cond
            x0 = cond_ind * cond_latents + (1 - cond_ind) * x0
            if v_uncond is not None:
                x0_u = (1 - cur_t) * latents - cur_t * v_uncond
                x0_u = cond_ind * cond_latents + (1 - cond_ind) * x0_u
                x0 = x0 + guidance_scale * (x0 - x0_u)
            latents = self.scheduler.step((latents - x0) / sigma, t, latents, return_dict=False)[0]

        if output_type == "latent":
            return latents
        return self._decode(latents, device)

    def _velocities(self, x_in, t_in, fps, cond_mask, padding_mask, text, negative_text, step):
        """Unfused guidance: the conditional and (with `negative_text`) unconditional velocity, float32.
        Each pass has its own cache context, so a step cache compares cond with cond, uncond with uncond."""
        kw = dict(hidden_states=x_in, timestep=t_in, fps=fps, condition_mask=cond_mask,
                  padding_mask=padding_mask, return_dict=False)
        with speed.step_context(self.transformer, "cond", **step):
            v_cond = self.transformer(encoder_hidden_states=text, **kw)[0].float()
        if negative_text is None:
            return v_cond, None
        with speed.step_context(self.transformer, "uncond", **step):
            return v_cond, self.transformer(encoder_hidden_states=negative_text, **kw)[0].float()

    def _decode(self, latents: torch.Tensor, device: Any) -> np.ndarray:
        """Denormalised latents -> uint8 (T, H, W, 3) frames, through the video guardrail when it is on."""
        mean = torch.tensor(self.vae.config.latents_mean).view(1, -1, 1, 1, 1).to(latents)
        std = torch.tensor(self.vae.config.latents_std).view(1, -1, 1, 1, 1).to(latents)
        latents = latents * std / self.scheduler.config.sigma_data + mean
        return self._frames_out(self.vae.decode(latents.to(self.vae.dtype), return_dict=False)[0], device)


@register_backbone
class Cosmos2Backbone(Backbone):
    kind = "cosmos2"

    @classmethod
    def build(cls, preset: WorldModelPreset, guardrail: Any = None) -> Cosmos2Backbone:
        transformer = CosmosTransformer3DModel(**_tuples(preset.transformer))
        vae = AutoencoderKLWan(**_vae_config(preset.vae))
        if preset.tokenizer == "builtin":
            tokenizer = build_toy_tokenizer()
        else:
            raise DreamgenError(f"{preset.source}: preset {preset.name!r} uses the {preset.tokenizer!r} tokenizer, "
                                "which cannot be built offline; load a checkpoint folder with --pretrained")
        te_cfg = T5Config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                          eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id,
                          **preset.text_encoder)
        text_encoder = T5EncoderModel(te_cfg).eval()
        if text_encoder.config.d_model != transformer.config.text_embed_dim:
            raise DreamgenError(f"{preset.source}: text_encoder.d_model must equal transformer.text_embed_dim")
        scheduler = FlowMatchEulerDiscreteScheduler(use_karras_sigmas=True)
        pipe = DreamgenCosmos2Pipeline(text_encoder, tokenizer, transformer, vae, scheduler, safety_checker=guardrail)
        return cls(pipe, preset)

    @classmethod
    def load(cls, folder: str | Path, preset: WorldModelPreset, guardrail: Any = None,
             torch_dtype: torch.dtype | None = None) -> Cosmos2Backbone:
        pipe = load_guarded(DreamgenCosmos2Pipeline, cls.check_folder(folder), guardrail, torch_dtype, "Cosmos2")
        return cls(pipe, preset)

    # ----- data -> model inputs ---------------------------------------------------------------
    def rope_fps(self, fps: float) -> float | None:
        # Released Predict2 checkpoints were trained without fps modulation (diffusers #14768): feeding
        # the RoPE's base fps makes the scaling 24/24 = 1.
        return fps if self.preset.fps_modulation else self.transformer.rope.base_fps

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        x = video.to(self.device).permute(0, 4, 1, 2, 3).to(self.vae.dtype) / 127.5 - 1.0
        latents = self.vae.encode(x).latent_dist.mode()
        return self._normalise(latents)

    def _normalise(self, latents: torch.Tensor) -> torch.Tensor:
        cfg = self.vae.config
        mean = torch.tensor(cfg.latents_mean, device=latents.device).view(1, -1, 1, 1, 1)
        std = torch.tensor(cfg.latents_std, device=latents.device).view(1, -1, 1, 1, 1)
        return ((latents.float() - mean) / std * self.pipe.scheduler.config.sigma_data)

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        with torch.no_grad():
            return self.pipe._get_t5_prompt_embeds(prompts, max_sequence_length=self.preset.max_sequence_length,
                                                   device=self.device, dtype=torch.float32)

    def training_loss(self, latents: torch.Tensor, cond: torch.Tensor, video: torch.Tensor | None = None,
                      generator: torch.Generator | None = None, model: torch.nn.Module | None = None) -> torch.Tensor:
        tr = self.preset.train
        b, _, n_lat, h, w = latents.shape
        dev = latents.device
        cond_ind = cond_indicator(tr.cond_latent_frames, n_lat, generator, 1, dev)
        sigma = torch.exp(torch.randn(b, generator=generator) * tr.sigma_p_std + tr.sigma_p_mean).to(dev)
        if tr.sigma_scale_by_frames:
            sigma = sigma * n_lat ** 0.5
        t = (sigma / (1 + sigma)).view(b, 1, 1, 1, 1)
        eps = torch.randn(latents.shape, generator=generator).to(dev)
        x_t = (1 - t) * latents + t * eps
        x_in = cond_ind * latents + (1 - cond_ind) * x_t
        t_cond = SIGMA_CONDITIONING / (1 + SIGMA_CONDITIONING)
        t_in = cond_ind * t_cond + (1 - cond_ind) * t  # (B, 1, T, 1, 1)
        dtype = self.transformer.dtype
        v = (model or self.transformer)(
            hidden_states=x_in.to(dtype), timestep=t_in.to(dtype), encoder_hidden_states=cond.to(dtype),
            fps=self.rope_fps(self.preset.fps), condition_mask=cond_ind.expand(b, 1, n_lat, h, w).to(dtype),
            padding_mask=torch.zeros(1, 1, h, w, device=dev, dtype=dtype), return_dict=False)[0]
        err = (v.float() - (eps - latents)) ** 2 * (1 - cond_ind)
        return err.sum() / ((1 - cond_ind).sum() * b * latents.shape[1] * h * w)

    # ----- sampling ---------------------------------------------------------------------------
    def sample(self, image: np.ndarray, prompt: str, *, negative_prompt: str | None, num_frames: int,
               num_inference_steps: int, guidance_scale: float, seed: int, fps: float,
               fused_cfg: bool = True, height: int | None = None, width: int | None = None) -> np.ndarray:
        from PIL import Image

        height = height or image.shape[0]
        width = width or image.shape[1]
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        neg = self.preset.negative_prompt if negative_prompt is None else negative_prompt
        return self.pipe.generate_video(
            Image.fromarray(image), prompt, negative_prompt=neg, height=height, width=width,
            num_frames=num_frames, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
            fps=self.rope_fps(fps), generator=generator, max_sequence_length=self.preset.max_sequence_length,
            fused_cfg=fused_cfg)

    def stock_call(self, prompt: str, *, negative_prompt: str | None, num_frames: int, num_inference_steps: int,
                   guidance_scale: float, fps: float, height: int, width: int) -> dict[str, Any]:
        return {"prompt": prompt, "negative_prompt": self.preset.negative_prompt if negative_prompt is None
                else negative_prompt, "height": height, "width": width, "num_frames": num_frames,
                "num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale,
                "fps": self.rope_fps(fps), "max_sequence_length": self.preset.max_sequence_length}

    @torch.no_grad()
    def set_latent_stats(self, videos: list[torch.Tensor]) -> None:
        """Per-channel mean/std of the trained VAE's latents, so the transformer sees unit-scale inputs."""
        lat = torch.cat([self.vae.encode(v.to(self.device).permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0)
                         .latent_dist.mode() for v in videos])
        dims = [0, 2, 3, 4]
        self.vae.register_to_config(latents_mean=lat.mean(dims).tolist(),
                                    latents_std=lat.std(dims).clamp_min(1e-3).tolist())


def stock_pipeline(backbone: Cosmos2Backbone) -> Cosmos2VideoToWorldPipeline:
    """The unmodified diffusers pipeline sharing `backbone`'s components (tests and benchmarks compare
    against it). The guardrail is the pass-through opt-out unless the backbone carries a real one."""
    p = backbone.pipe
    return Cosmos2VideoToWorldPipeline(p.text_encoder, p.tokenizer, p.transformer, p.vae, p.scheduler,
                                       safety_checker=p.safety_checker or GuardrailDisabled())


def cond_indicator(choices: list[int], n_lat: int, generator: torch.Generator | None, fallback: int,
                   device: Any) -> torch.Tensor:
    """(1, 1, n_lat, 1, 1): 1 on the leading latent frames that condition this training batch, their number
    drawn with `generator` from the preset's `choices` shorter than the clip (else `fallback`)."""
    choices = [c for c in choices if c < n_lat] or [fallback]
    n_cond = choices[int(torch.randint(len(choices), (1,), generator=generator))]
    cond_ind = torch.zeros(1, 1, n_lat, 1, 1, device=device)
    cond_ind[:, :, :n_cond] = 1.0
    return cond_ind


def _tuples(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if k in ("max_size", "patch_size", "rope_scale") and isinstance(v, list) else v
            for k, v in cfg.items()}


def _vae_config(cfg: dict[str, Any]) -> dict[str, Any]:
    cfg = dict(cfg)
    z = cfg.get("z_dim", 16)
    if z != 16:  # the defaults are Wan2.1's 16 statistics; a new latent width starts at identity
        cfg.setdefault("latents_mean", [0.0] * z)
        cfg.setdefault("latents_std", [1.0] * z)
    return cfg
