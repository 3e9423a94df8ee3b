"""Block-sparse local (spatio-temporal window) self-attention for Cosmos-Predict2 through diffusers'
`flex` attention backend (`torch.nn.attention.flex_attention`).

A latent token (t, h, w) attends to the tokens within `window = (T, H, W)` latent frames / patch rows /
patch columns of itself, and to every token of the first latent frame (the conditioning image). The
mask is a flex `BlockMask` built once per token grid, outside any compiled region: a forward pre-hook
on the transformer reads the grid from the input's shape. Cross-attention (to the text) is unchanged.
Only self-attention's kernel changes: the processor is diffusers' Cosmos processor with the mask
passed to the `flex` backend. Flex attention is only fast when compiled (it then skips the masked-out
blocks); eagerly (CPU tests) it computes the same result the slow way.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.transformers.transformer_cosmos import CosmosAttnProcessor2_0

from dreamgen.errors import DreamgenError


class _WindowState:
    def __init__(self, window: tuple[int, int, int], patch: tuple[int, int, int]):
        self.window = window
        self.patch = patch
        self.grid: tuple[int, int, int] | None = None
        self.masks: dict[tuple, Any] = {}

    def mask(self, device: torch.device):
        key = (self.grid, str(device))
        if key not in self.masks:
            self.masks[key] = window_block_mask(self.grid, self.window, device)
        return self.masks[key]


def window_block_mask(grid: tuple[int, int, int], window: tuple[int, int, int], device: torch.device):
    """The flex BlockMask of local attention over a (T, H, W) token grid, first frame always visible."""
    from torch.nn.attention.flex_attention import create_block_mask

    t_n, h_n, w_n = grid
    wt, wh, ww = window
    hw = h_n * w_n

    def mask_mod(b, h, q, kv):
        tq, tk = q // hw, kv // hw
        hq, hk = (q // w_n) % h_n, (kv // w_n) % h_n
        cq, ck = q % w_n, kv % w_n
        near = ((tq - tk).abs() <= wt) & ((hq - hk).abs() <= wh) & ((cq - ck).abs() <= ww)
        return near | (tk == 0)

    n = t_n * hw
    return create_block_mask(mask_mod, None, None, n, n, device=device, _compile=device.type == "cuda")


def window_density(grid: tuple[int, int, int], window: tuple[int, int, int]) -> float:
    """Fraction of (query, key) pairs the window keeps (the attention FLOPs left, before block rounding)."""
    return 1.0 - window_block_mask(grid, window, torch.device("cpu")).sparsity() / 100.0


class WindowAttnProcessor(CosmosAttnProcessor2_0):
    """diffusers' Cosmos attention processor; self-attention goes through flex with the window mask."""

    def __init__(self, state: _WindowState):
        super().__init__()
        self.state = state

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 image_rotary_emb=None) -> torch.Tensor:
        if encoder_hidden_states is not None or self.state.grid is None:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        from diffusers.models.embeddings import apply_rotary_emb

        q, k, v = (proj(hidden_states).unflatten(2, (attn.heads, -1)).transpose(1, 2)
                   for proj in (attn.to_q, attn.to_k, attn.to_v))
        q, k = attn.norm_q(q), attn.norm_k(k)
        if image_rotary_emb is not None:
            q = apply_rotary_emb(q, image_rotary_emb, use_real=True, use_real_unbind_dim=-2)
            k = apply_rotary_emb(k, image_rotary_emb, use_real=True, use_real_unbind_dim=-2)
        out = dispatch_attention_fn(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                    attn_mask=self.state.mask(q.device), backend="flex")
        out = out.flatten(2, 3).type_as(q)
        return attn.to_out[1](attn.to_out[0](out))


def apply_window_attention(transformer: torch.nn.Module, window: tuple[int, int, int]) -> None:
    """Give every block's self-attention the window processor; record the token grid on each call."""
    blocks = getattr(transformer, "transformer_blocks", None)
    if blocks is None or not all(hasattr(b, "attn1") for b in blocks) or not hasattr(transformer.config, "patch_size"):
        raise DreamgenError(f"--attention-window is implemented for Cosmos-Predict2 transformers, not "
                            f"{type(transformer).__name__}")
    state = _WindowState(tuple(window), tuple(transformer.config.patch_size))
    for block in blocks:
        block.attn1.set_processor(WindowAttnProcessor(state))

    def record_grid(module, args, kwargs):
        x = kwargs.get("hidden_states", args[0] if args else None)
        p_t, p_h, p_w = state.patch
        state.grid = (x.shape[2] // p_t, x.shape[3] // p_h, x.shape[4] // p_w)

    transformer.register_forward_pre_hook(record_grid, with_kwargs=True)
    transformer._dreamgen_window = state
