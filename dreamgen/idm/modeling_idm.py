"""The inverse dynamics model: SigLIP image features -> flow-matching DiT -> action chunk.

Reads top to bottom: encoder, token mixer, DiT blocks, then `forward` (training loss) and
`sample` (Euler integration of the learned velocity field). Actions are in the embodiment's
normalised [-1, 1] space; the caller (un)normalises.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from dreamgen.errors import DreamgenError
from dreamgen.idm.configuration_idm import IDMConfig

log = logging.getLogger(__name__)

# SigLIP's preprocessing: pixels scaled to [-1, 1]
IMAGE_MEAN, IMAGE_STD = 0.5, 0.5


def build_encoder(config: IDMConfig) -> tuple[nn.Module, dict]:
    """A SigLIP vision tower without its pooling head, and the vision config dict it was built from."""
    from transformers import AutoConfig, SiglipVisionConfig, SiglipVisionModel

    if config.encoder_path:
        try:
            auto = AutoConfig.from_pretrained(config.encoder_path, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise DreamgenError(f"{config.encoder_path}: not a transformers model folder ({exc})") from None
        if auto.model_type not in ("siglip", "siglip_vision_model"):
            raise DreamgenError(
                f"{config.encoder_path}: model_type {auto.model_type!r} is not a fixed-resolution SigLIP/SigLIP-2 "
                "(use e.g. google/siglip2-large-patch16-256; NaFlex variants are not supported)"
            )
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # a full SiglipModel folder: its text tower is (rightly) left unused
        try:
            model = SiglipVisionModel.from_pretrained(config.encoder_path, local_files_only=True)
        finally:
            hf_logging.set_verbosity(verbosity)
        vision_config = model.config
    else:
        h, w = config.image_size
        if h != w:
            raise DreamgenError(f"a from-scratch SigLIP encoder needs a square image_size, got {config.image_size}")
        vision_config = SiglipVisionConfig(**{**config.encoder, "image_size": h})
        model = SiglipVisionModel(vision_config)
    # transformers <= 5.5 wraps the tower in `.vision_model`; later 5.x releases flatten it
    tower = getattr(model, "vision_model", model)
    tower.head, tower.use_head = None, False  # pooled output unused: keep DDP free of unused parameters
    if config.encoder_drop_last_layer:
        tower.encoder.layers = tower.encoder.layers[:-1]
    return tower, vision_config.to_dict()


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        context = x if context is None else context
        q = self.q(x).view(b, n, self.num_heads, -1).transpose(1, 2)
        k, v = self.kv(context).view(b, context.shape[1], 2, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


def mlp(dim: int, ratio: float, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, int(dim * ratio)), nn.GELU(approximate="tanh"), nn.Dropout(dropout),
                         nn.Linear(int(dim * ratio), dim))


class MixerBlock(nn.Module):
    """Pre-norm transformer block over the vision tokens of all observed frames."""

    def __init__(self, dim: int, num_heads: int, ratio: float, dropout: float) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, num_heads, dropout)
        self.norm2, self.mlp = nn.LayerNorm(dim), mlp(dim, ratio, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class DiTBlock(nn.Module):
    """Action tokens: self-attention, cross-attention to vision tokens, MLP; adaLN-zero on the flow time."""

    def __init__(self, dim: int, num_heads: int, ratio: float, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.self_attn = Attention(dim, num_heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = Attention(dim, num_heads, dropout)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=False)
        self.mlp = mlp(dim, ratio, dropout)
        self.ada = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        s1, g1, sh1, s2, g2, sh2 = self.ada(F.silu(temb))[:, None].chunk(6, dim=-1)
        x = x + (1 + g1) * self.self_attn(self.norm1(x) * (1 + s1) + sh1)
        x = x + self.cross_attn(self.norm2(x), context)
        return x + (1 + g2) * self.mlp(self.norm3(x) * (1 + s2) + sh2)


class IDM(nn.Module):
    def __init__(self, config: IDMConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder, self.encoder_config = build_encoder(config)
        if config.encoder_path:
            # the checkpoint carries the encoder's shape: it must rebuild without the original folder
            config.encoder = {k: v for k, v in self.encoder_config.items() if not k.startswith("_")}
            size = self.encoder_config["image_size"]
            config.image_size = [size, size] if isinstance(size, int) else list(size)
        d = config.hidden_size
        enc_dim = self.encoder_config["hidden_size"]
        self.vision_proj = nn.Linear(enc_dim, d)
        self.frame_embed = nn.Parameter(torch.randn(config.num_frames, d) * 0.02)
        num_tokens = self._num_patches()
        self.token_pos = nn.Parameter(torch.randn(num_tokens, d) * 0.02)
        self.mixer = nn.ModuleList(MixerBlock(d, config.num_heads, config.mlp_ratio, config.dropout)
                                   for _ in range(config.vl_layers))
        self.mixer_norm = nn.LayerNorm(d)
        self.action_in = nn.Linear(config.action_dim, d)
        self.action_pos = nn.Parameter(torch.randn(config.action_horizon, d) * 0.02)
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList(DiTBlock(d, config.num_heads, config.mlp_ratio, config.dropout)
                                    for _ in range(config.dit_layers))
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False)
        self.final_ada = nn.Linear(d, 2 * d)
        self.action_out = nn.Linear(d, config.action_dim)
        for layer in (self.final_ada, self.action_out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def _num_patches(self) -> int:
        ps = self.encoder_config["patch_size"]
        size = self.encoder_config["image_size"]
        h, w = (size, size) if isinstance(size, int) else size
        return (h // ps) * (w // ps)

    # ----- inputs ---------------------------------------------------------------------------
    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (B, F, H, W, 3) -> float pixels (B*F, 3, h, w) at the encoder's resolution in [-1, 1]."""
        b, f, h, w, _ = frames.shape
        x = frames.reshape(b * f, h, w, 3).permute(0, 3, 1, 2).float().div_(255.0)
        size = self.encoder_config["image_size"]
        size = (size, size) if isinstance(size, int) else tuple(size)
        if (h, w) != size:
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        return (x - IMAGE_MEAN) / IMAGE_STD

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames (N, H, W, 3) -> per-frame tokens (N, P, hidden). Extraction encodes each frame once."""
        pixels = self.preprocess(frames[:, None]).to(self.vision_proj.weight.dtype)
        tokens = self.encoder(pixel_values=pixels).last_hidden_state  # (N, P, enc)
        return self.vision_proj(tokens) + self.token_pos

    def mix(self, tokens: torch.Tensor) -> torch.Tensor:
        """Per-frame tokens of one sample's observations (B, F, P, hidden) -> context (B, F*P, hidden)."""
        b = tokens.shape[0]
        x = (tokens + self.frame_embed[None, :, None]).reshape(b, -1, tokens.shape[-1])
        for block in self.mixer:
            x = block(x)
        return self.mixer_norm(x)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames (B, F, H, W, 3) -> vision context (B, F*P, hidden)."""
        b, f = frames.shape[:2]
        tokens = self.encode_frames(frames.reshape(b * f, *frames.shape[2:]))
        return self.mix(tokens.view(b, f, *tokens.shape[1:]))

    # ----- the velocity field ------------------------------------------------------------------
    def velocity(self, noisy: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Predicted d(action)/dt at flow time t in [0, 1] (noise at 0, data at 1)."""
        buckets = (t * self.config.num_timestep_buckets).floor()
        temb = self.time_mlp(timestep_embedding(buckets, self.config.hidden_size).to(noisy.dtype))
        x = self.action_in(noisy) + self.action_pos
        for block in self.blocks:
            x = block(x, context, temb)
        shift, scale = self.final_ada(F.silu(temb))[:, None].chunk(2, dim=-1)
        return self.action_out(self.final_norm(x) * (1 + scale) + shift)

    def sample_time(self, n: int, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
        c = self.config
        beta = torch.distributions.Beta(torch.tensor(c.noise_beta_alpha), torch.tensor(c.noise_beta_beta))
        if generator is None:
            u = beta.sample((n,))
        else:  # Beta has no generator argument: draw through two Gammas with a seeded uniform
            u = _seeded_beta(c.noise_beta_alpha, c.noise_beta_beta, n, generator)
        return ((c.noise_s - u) / c.noise_s).to(device)

    def forward(self, frames: torch.Tensor, actions: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Flow-matching loss. frames uint8 (B, F, H, W, 3); actions normalised (B, H, A)."""
        context = self.encode(frames)
        actions = actions.to(context.dtype)
        if generator is None:
            noise = torch.randn_like(actions)
        else:
            noise = torch.randn(actions.shape, generator=generator, dtype=torch.float32).to(actions)
        t = self.sample_time(actions.shape[0], actions.device, generator).to(actions.dtype)
        noisy = (1 - t[:, None, None]) * noise + t[:, None, None] * actions
        pred = self.velocity(noisy, t, context)
        return F.mse_loss(pred.float(), (actions - noise).float())

    @torch.no_grad()
    def sample(self, frames: torch.Tensor | None = None, num_steps: int | None = None,
               generator: torch.Generator | None = None, context: torch.Tensor | None = None,
               noise: torch.Tensor | None = None) -> torch.Tensor:
        """Predict normalised action chunks (B, H, A) by Euler steps from noise (frames or a ready context;
        `noise` (B, H, A) to start from, else drawn from `generator`)."""
        steps = num_steps or self.config.num_inference_steps
        if context is None:
            context = self.encode(frames)
        b = context.shape[0]
        shape = (b, self.config.action_horizon, self.config.action_dim)
        if noise is None:
            noise = torch.randn(shape, generator=generator, dtype=torch.float32)
        x = noise.to(context)
        for i in range(steps):
            t = torch.full((b,), i / steps, device=x.device, dtype=x.dtype)
            x = x + self.velocity(x, t, context) / steps
        return x.float()


def _seeded_beta(a: float, b: float, n: int, generator: torch.Generator) -> torch.Tensor:
    # Beta(a, b) = X / (X + Y), X ~ Gamma(a), Y ~ Gamma(b); gammas drawn from seeded uniforms
    # by inverse CDF would need scipy: use torch's gamma on a forked RNG state instead.
    state = torch.get_rng_state()
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    try:
        x = torch._standard_gamma(torch.full((n,), float(a)))
        y = torch._standard_gamma(torch.full((n,), float(b)))
    finally:
        torch.set_rng_state(state)
    return x / (x + y)
