"""Seconds per generated video and peak memory: our sampler vs. the stock diffusers pipeline.

Both run the same random-weight components in the same process (speed depends on shapes only), so
the comparison is fair. The text encoder is a 2-layer T5 with the real embedding width (1024) and the
in-code tokenizer: T5-11B cannot be built offline, and prompt encoding is a fixed cost of well under
a second per video, identical for both samplers.

    # one H100 (DESIGN §7 setting; ~6-10 min)
    python benchmarks/bench_generate.py --preset cosmos_predict2_2b --device cuda --dtype bf16 \
        --height 432 --width 768 --frames 93 --steps 35 --guidance 7 --append
    # the toy preset on a CPU
    python benchmarks/bench_generate.py --preset toy --device cpu --append

Variants: stock (Cosmos2VideoToWorldPipeline.__call__), ours-unfused (our loop, two guidance passes),
ours (cond + uncond in one batch), ours+cudnn (cuDNN attention backend, GPU only), and one variant per
speed lever of dreamgen/worldmodel/speed.py, alone and stacked (LEVERS below: ours+compile, ours+fbc,
ours+taylorseer, ours+faster, ours+fp8, ours+window, ours+fast = `dreamgen generate --fast`, ...). Each
lever variant runs on its own copy of the transformer (the stock one stays untouched), so all variants
interleave in one process. The quality column is the output latents' relative error vs the stock
pipeline's at the same seed (the numerics gate: <= 1e-2); approximating levers are gated on the ToyWorld
world model by `python -m dreamgen.worldmodel.gates` (docs/worldmodel.md).

    # the lever table on one H200 (see docs/worldmodel.md for the GPU command lines and their minutes)
    python benchmarks/bench_generate.py --preset cosmos_predict2_2b --device cuda --dtype bf16 \
        --height 432 --width 768 --frames 93 --steps 35 --guidance 7 --repeats 1 \
        --variants stock,ours+compile,ours+fbc,ours+faster,ours+fp8,ours+fast --append
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dreamgen.worldmodel.config import load_preset  # noqa: E402
from dreamgen.worldmodel.cosmos2 import Cosmos2Backbone, stock_pipeline  # noqa: E402
from dreamgen.worldmodel.gates import latent_rel_error, with_speed  # noqa: E402
from dreamgen.worldmodel.speed import FAST, SpeedSettings  # noqa: E402

# one lever alone, then stacks (the name after "ours+")
LEVERS = {
    "compile": SpeedSettings(compile="default"),
    "compile-autotune": SpeedSettings(compile="max-autotune-no-cudagraphs"),
    "fbc": SpeedSettings(cache="fbc", cache_threshold=0.05),
    "fbc0.1": SpeedSettings(cache="fbc", cache_threshold=0.1),
    "taylorseer": SpeedSettings(cache="taylorseer", cache_threshold=3),
    "faster": SpeedSettings(cache="faster", cache_threshold=3),
    "fp8": SpeedSettings(compile="default", fp8=True),  # torchao's FP8 is only fast compiled
    "window": SpeedSettings(compile="default", window=(2, 6, 6)),  # flex is only fast compiled
    "compile+faster": SpeedSettings(compile="default", cache="faster", cache_threshold=3),
    "fast": FAST,
    "fast+faster": SpeedSettings(compile=FAST.compile, fp8=True, cache="faster", cache_threshold=3),
    "fast+window": SpeedSettings(compile=FAST.compile, fp8=True, cache="fbc", cache_threshold=0.05, window=(2, 6, 6)),
}

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def build(preset_name: str, device: str, dtype: torch.dtype, max_seq: int | None) -> Cosmos2Backbone:
    p = load_preset(preset_name)
    width = p.transformer.get("text_embed_dim", 1024)
    changes = {"tokenizer": "builtin"}
    if p.tokenizer != "builtin":
        changes["text_encoder"] = {"d_model": width, "d_kv": 64, "d_ff": 2 * width, "num_layers": 2,
                                   "num_heads": max(1, width // 64), "feed_forward_proj": "relu"}
    if max_seq:
        changes["max_sequence_length"] = max_seq
    torch.manual_seed(0)
    with torch.device(device):
        bb = Cosmos2Backbone.build(p.replace(**changes))
    bb.pipe.to(device=device, dtype=dtype)
    bb.pipe.set_progress_bar_config(disable=True)
    return bb


def timed(fn, device: str) -> tuple[float, float]:
    """Seconds for one call, and the peak GPU memory it allocated above what was resident (nan on CPU)."""
    before = 0
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    t0 = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - before) / 2**30 if device.startswith("cuda") else float("nan")
    return time.perf_counter() - t0, peak


def timed_latents(fn, steps: int, device: str):
    out = {}
    res = timed(lambda: out.setdefault("x", fn(steps)), device)
    return res, out["x"].float()


def make_runner(variant: str, bb: Cosmos2Backbone, stock, image, prompt: str, common: dict, steps: int):
    """fn(num_steps) -> output latents for `variant`, and the levers it had to skip here (with reasons)."""
    from dataclasses import replace

    def ours(pipe, fused: bool = True, backend: str | None = None):
        def fn(n: int):
            if backend:  # diffusers' attention backend is a global: set it for this variant's call only
                pipe.transformer.set_attention_backend(backend)
            try:
                return pipe.generate_video(image, prompt, generator=torch.Generator().manual_seed(0), fused_cfg=fused,
                                           output_type="latent", **{**common, "num_inference_steps": n})
            finally:
                if backend:
                    pipe.transformer.reset_attention_backend()
        return fn

    if variant == "stock":
        return (lambda n: stock(image=image, prompt=prompt, generator=torch.Generator().manual_seed(0),
                                output_type="latent", **{**common, "num_inference_steps": n}).frames), {}
    if variant in ("ours", "ours-unfused", "ours+cudnn"):
        return ours(bb.pipe, variant != "ours-unfused", "_native_cudnn" if variant == "ours+cudnn" else None), {}
    settings = LEVERS[variant.removeprefix("ours+")]
    if settings.compile:
        settings = replace(settings, compile_backend=ARGS_COMPILE_BACKEND[0])
    fast, record = with_speed(bb, settings, steps)
    fast.pipe.set_progress_bar_config(disable=True)
    return ours(fast.pipe), record["skipped"]


ARGS_COMPILE_BACKEND = ["inductor"]


def _measure(bb: Cosmos2Backbone, variants: list[str], runners: dict, skipped: dict, steps: int, args):
    """[(variant, s/video, peak GiB, latent rel. error vs stock, levers skipped)], and the decode seconds."""
    # Variants alternate within each repeat so that a noisy (shared) machine biases none of them.
    times: dict[str, list[float]] = {v: [] for v in variants}
    peaks: dict[str, float] = {}
    outs: dict[str, torch.Tensor] = {}
    for v in variants:
        runners[v](args.warmup_steps or steps)  # warm-up: compiles, and meets the cache's skip/compute paths
    for _ in range(args.repeats):
        for v in variants:
            (sec, peak), outs[v] = timed_latents(runners[v], steps, args.device)
            times[v].append(sec)
            peaks[v] = peak if np.isnan(peak) else max(peaks.get(v, 0.0), peak)
    with torch.no_grad():
        decode_s = timed(lambda: bb.pipe._decode(outs[variants[0]], args.device), args.device)[0]
    ref = outs.get("stock")
    return [(v, float(np.median(times[v])) + decode_s, peaks[v],
             latent_rel_error(outs[v], ref) if ref is not None else float("nan"), skipped[v])
            for v in variants], decode_s


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="toy")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, help="bf16 | fp32 (default: bf16 on GPU, fp32 on CPU)")
    ap.add_argument("--height", type=int, default=None)
    ap.add_argument("--width", type=int, default=None)
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--warmup-steps", type=int, default=None, help="steps of the warm-up run (default: --steps)")
    ap.add_argument("--variants", default="stock,ours-unfused,ours,ours+cudnn,ours+compile")
    ap.add_argument("--compile-backend", default="inductor", help="aot_eager for quick CPU checks")
    ap.add_argument("--max-sequence-length", type=int, default=None)
    ap.add_argument("--append", action="store_true", help=f"append the table to {RESULTS}")
    args = ap.parse_args(argv)

    ARGS_COMPILE_BACKEND[0] = args.compile_backend
    on_gpu = args.device.startswith("cuda")
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype or ("bf16" if on_gpu else "fp32")]
    if not on_gpu:
        torch.set_num_threads(max(1, torch.get_num_threads()))
    bb = build(args.preset, args.device, dtype, args.max_sequence_length)
    p = bb.preset
    h, w = args.height or p.resolution[0], args.width or p.resolution[1]
    frames = args.frames or p.num_frames
    steps = args.steps or p.num_inference_steps
    guidance = p.guidance_scale if args.guidance is None else args.guidance
    from PIL import Image

    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8))
    prompt = "The robot arm is performing a task. Pick up the red cube and place it in the bowl."
    common = dict(negative_prompt=p.negative_prompt, height=h, width=w, num_frames=frames,
                  num_inference_steps=steps, guidance_scale=guidance, fps=bb.rope_fps(p.fps),
                  max_sequence_length=p.max_sequence_length)
    stock = stock_pipeline(bb)
    stock.set_progress_bar_config(disable=True)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    known = {"stock", "ours-unfused", "ours", "ours+cudnn", *(f"ours+{k}" for k in LEVERS)}
    if set(variants) - known:
        raise SystemExit(f"unknown variants {sorted(set(variants) - known)}; choose from {sorted(known)}")
    if not on_gpu and "ours+cudnn" in variants:
        variants.remove("ours+cudnn")
    runners, skipped = {}, {}
    for v in variants:
        runners[v], skipped[v] = make_runner(v, bb, stock, image, prompt, common, steps)

    rows, decode_s = _measure(bb, variants, runners, skipped, steps, args)
    for v, sec, peak, err, _ in rows:
        print(f"{v:18s} {sec:8.2f} s/video  peak {peak:6.2f} GiB  rel. error {err:.2e}", flush=True)

    base = next((s for v, s, *_ in rows if v == "stock"), None)
    device_name = torch.cuda.get_device_name() if on_gpu else f"CPU ({platform.processor() or platform.machine()}, " \
        f"{torch.get_num_threads()} threads)"
    lines = [f"\n## bench_generate: {p.name} {h}x{w}, {frames} frames, {steps} steps, guidance {guidance} "
             f"({dt.date.today()})\n",
             f"Machine: {device_name}; torch {torch.__version__}; dtype {str(dtype).removeprefix('torch.')}; "
             f"median of {args.repeats} (variants interleaved) after one warm-up. s/video = prompt encoding + "
             f"denoising loop (timed per variant) + one VAE decode ({decode_s:.2f} s, the same VAE for all, timed "
             "once). Peak GiB: above the memory resident before the call (activations, caches; not weights).\n",
             command_line("bench_generate.py", argv),
             "\n| variant | s/video | vs stock | peak GiB | latent rel. error vs stock | levers skipped |\n"
             "| --- | --- | --- | --- | --- | --- |\n"]
    for v, s, m, err, skip in rows:
        ratio = f"{base / s:.2f}x" if base else "-"
        lines.append(f"| {v} | {s:.2f} | {ratio} | {m:.2f} | {err:.2e} | {'; '.join(skip.values()) or '-'} |\n")
    publish(lines, args.append)


def command_line(script: str, argv: list[str] | None) -> str:
    """The results section's `Command:` line for benchmarks/`script` run with `argv` (default: sys.argv)."""
    return f"Command: `python benchmarks/{script} {' '.join(argv if argv is not None else sys.argv[1:])}`\n"


def publish(lines: list[str], append: bool) -> None:
    """Print a results section; with --append also add it to RESULTS.md."""
    text = "".join(lines)
    print(text, flush=True)
    if append:
        with RESULTS.open("a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
