"""Wan2.1 I2V: stock `WanImageToVideoPipeline` vs ours (the same pipeline with speed levers on a copy of
its transformer), random weights, same process, variants interleaved.

The 14B architecture (40 blocks x 5120, CLIP image cross-attention) at 480x832, 81 frames, 40 steps,
guidance 5 takes minutes per video, so by default only `--timed-steps` denoising steps are run and
s/video is EXTRAPOLATED: prompt/image encoding + steps x (median seconds per timed step, the first step
excluded) + one VAE decode, each measured. Step caches are not in this table: their cost depends on
which steps they skip, which a few timed steps cannot show (the Cosmos table measures them in full).
The text encoder is a 1-layer UMT5 of the real width (4096) and the image encoder a 1-layer CLIP ViT of
the real width (1280): both run once per video, identically for every variant.

    # one H200 (~4 min): 14B architecture, 480p, 81 frames
    python benchmarks/bench_wan.py --device cuda --append
    # toy size on a CPU (tests/test_speed.py runs this)
    python benchmarks/bench_wan.py --tiny --device cpu
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_generate import command_line, publish  # noqa: E402

from dreamgen.worldmodel.gates import numerics_gate, with_speed  # noqa: E402
from dreamgen.worldmodel.speed import SpeedSettings  # noqa: E402

WAN_14B = dict(patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=36, out_channels=16,
               text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40, cross_attn_norm=True,
               qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=1280, added_kv_proj_dim=5120, rope_max_seq_len=1024)
TINY = dict(WAN_14B, num_attention_heads=2, attention_head_dim=16, ffn_dim=32, num_layers=2, text_dim=32,
            image_dim=32, added_kv_proj_dim=32)
VARIANTS = {"ours+compile": SpeedSettings(compile="default"),
            "ours+compile+fp8": SpeedSettings(compile="default", fp8=True)}


def build(tiny: bool, device: str, dtype: torch.dtype):
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanImageToVideoPipeline,
        WanTransformer3DModel,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, T5Config, UMT5EncoderModel

    from dreamgen.worldmodel.config import load_preset
    from dreamgen.worldmodel.cosmos2 import build_toy_tokenizer
    from dreamgen.worldmodel.wan import WanI2VBackbone

    torch.manual_seed(0)
    cfg = TINY if tiny else WAN_14B
    tok = build_toy_tokenizer()
    with torch.device(device):
        text = UMT5EncoderModel(T5Config(vocab_size=len(tok), d_model=cfg["text_dim"], d_kv=64, d_ff=2 * cfg["text_dim"],
                                         num_layers=1, num_heads=max(1, cfg["text_dim"] // 64), pad_token_id=0))
        img_w = cfg["image_dim"]
        image_enc = CLIPVisionModel(CLIPVisionConfig(hidden_size=img_w, intermediate_size=2 * img_w, num_hidden_layers=1,
                                                     num_attention_heads=max(1, img_w // 80), image_size=224, patch_size=14))
        vae = AutoencoderKLWan(**({"base_dim": 8, "dim_mult": [1, 2, 2], "num_res_blocks": 1,
                                   "temperal_downsample": [True, True], "scale_factor_spatial": 4} if tiny else {}))
        transformer = WanTransformer3DModel(**cfg)
    pipe = WanImageToVideoPipeline(tok, text, vae, FlowMatchEulerDiscreteScheduler(shift=5.0), CLIPImageProcessor(),
                                   image_enc, transformer)
    pipe.to(device=device, dtype=dtype)
    pipe.image_encoder.to(torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return WanI2VBackbone(pipe, load_preset("wan2_1_i2v_14b"))


def run(bb, image, steps: int, shape: dict, device: str) -> tuple[torch.Tensor, list[float], float]:
    """Latents, the end time of each step (from the call's start) and the peak GPU GiB of one call."""
    ends: list[float] = []
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    def on_step(pipe, i, t, kw):
        sync()
        ends.append(time.perf_counter() - t0)
        return {}

    from dreamgen.worldmodel import speed

    speed.reset_cache(bb.transformer)
    sync()
    t0 = time.perf_counter()
    pos, neg = (_embed(bb.pipe, text) for text in ("pick up the red cube", ""))
    out = bb.pipe(image=image, prompt_embeds=pos, negative_prompt_embeds=neg, num_inference_steps=steps,
                  guidance_scale=5.0, generator=torch.Generator().manual_seed(0), output_type="latent",
                  callback_on_step_end=on_step, **shape)
    sync()
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")
    return out.frames, [0.0, *ends], peak


def _embed(pipe, text: str) -> torch.Tensor:
    """UMT5 prompt embedding padded to 512 tokens, as the pipeline makes it (without its `ftfy` text clean-up,
    which is not installed everywhere)."""
    ids = pipe.tokenizer([text], padding="max_length", max_length=512, truncation=True, return_tensors="pt")
    dev = pipe.text_encoder.device
    with torch.no_grad():
        out = pipe.text_encoder(ids.input_ids.to(dev), ids.attention_mask.to(dev)).last_hidden_state
    n = int(ids.attention_mask.sum())
    out[:, n:] = 0  # the pipeline zeroes the padding positions
    return out.to(pipe.transformer.dtype)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="toy sizes (CPU test)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=40, help="the steps a video takes (extrapolated to)")
    ap.add_argument("--timed-steps", type=int, default=4, help="steps actually run per variant")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--compile-backend", default="inductor")
    ap.add_argument("--append", action="store_true")
    args = ap.parse_args(argv)
    on_gpu = args.device.startswith("cuda")
    dtype = torch.bfloat16 if on_gpu else torch.float32
    bb = build(args.tiny, args.device, dtype)
    h, w, f = (16, 16, 5) if args.tiny else (480, 832, 81)
    shape = dict(height=h, width=w, num_frames=f)
    from PIL import Image

    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8))
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    if set(names) - set(VARIANTS):
        raise SystemExit(f"unknown variants {sorted(set(names) - set(VARIANTS))}; choose from {sorted(VARIANTS)}")
    models = {"stock": (bb, None)}
    for name in names:
        from dataclasses import replace

        fast, record = with_speed(bb, replace(VARIANTS[name], compile_backend=args.compile_backend))
        models[name] = (fast, record)
    for m, _ in models.values():  # warm-up (compiles) on 2 steps
        run(m, image, 2, shape, args.device)
    decode_s = _decode_seconds(bb, run(bb, image, 1, shape, args.device)[0], args.device)
    rows, ref = [], None
    for name, (m, record) in models.items():
        lat, ends, peak = run(m, image, args.timed_steps, shape, args.device)
        per_step = statistics.median(np.diff(ends[1:])) if len(ends) > 2 else ends[-1]
        setup = ends[1] - per_step  # encoding + first step's excess
        sec = setup + args.steps * per_step + decode_s
        ref = lat if ref is None else ref
        gate = numerics_gate(lat.float(), ref.float())
        rows.append({"variant": name, "s_per_video": sec, "s_per_step": per_step, "peak_gib": peak,
                     "rel_error": gate.figures["rel_error"], "skipped": (record or {}).get("skipped", {})})
    _report(rows, args, argv, decode_s)
    return rows


def _decode_seconds(bb, latents: torch.Tensor, device: str) -> float:
    vae = bb.pipe.vae
    with torch.no_grad():
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        vae.decode(latents.to(vae.dtype), return_dict=False)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return time.perf_counter() - t0


def _report(rows: list[dict], args, argv, decode_s: float) -> None:
    base = rows[0]["s_per_video"]
    dev = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    lines = [f"\n## bench_wan: Wan2.1 I2V {'toy' if args.tiny else '14B architecture'}, "
             f"{'16x16, 5' if args.tiny else '480x832, 81'} frames, {args.steps} steps, guidance 5 ({dt.date.today()})\n",
             f"Machine: {dev}; torch {torch.__version__}. EXTRAPOLATED: {args.timed_steps} steps run per variant, "
             f"s/video = encoding + {args.steps} x median s/step + VAE decode ({decode_s:.2f} s, measured once).\n",
             command_line("bench_wan.py", argv),
             "\n| variant | s/video | x stock | s/step | peak GiB | latent rel. error vs stock | skipped |\n"
             "| --- | --- | --- | --- | --- | --- | --- |\n"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['s_per_video']:.2f} | {base / r['s_per_video']:.2f}x | "
                     f"{r['s_per_step']:.3f} | {r['peak_gib']:.1f} | {r['rel_error']:.2e} | "
                     f"{'; '.join(r['skipped'].values()) or '-'} |\n")
    publish(lines, args.append)


if __name__ == "__main__":
    main()
