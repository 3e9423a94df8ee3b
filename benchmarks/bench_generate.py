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
ours (cond + uncond in one batch), ours+cudnn (cuDNN attention backend, GPU only), ours+compile
(torch.compile of the transformer; run last because compiling changes the shared module).
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
    """Seconds for one call, and the peak GPU memory it allocated (nan on CPU)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")
    return time.perf_counter() - t0, peak


def _measure(bb: Cosmos2Backbone, variants: list[str], prepare, run_ours, repeats: int,
             device: str) -> list[tuple[str, float, float]]:
    """(variant, median seconds per video, peak GiB) for each variant."""
    # Variants alternate within each repeat so that a noisy (shared) machine biases none of them;
    # compilation changes the shared transformer for good, so that variant runs last, on its own.
    plain = [v for v in variants if v != "ours+compile"]
    times: dict[str, list[float]] = {v: [] for v in variants}
    peaks: dict[str, float] = {}
    for v in plain:
        prepare(v)()  # warm-up
    for _ in range(repeats):
        for v in plain:
            sec, peak = timed(prepare(v), device)
            times[v].append(sec)
            peaks[v] = peak if np.isnan(peak) else max(peaks.get(v, 0.0), peak)
    if "ours+compile" in variants:
        bb.transformer.reset_attention_backend()
        bb.transformer.compile(dynamic=False)
        fn = run_ours(True)
        fn()  # compiles
        for _ in range(repeats):
            sec, peak = timed(fn, device)
            times["ours+compile"].append(sec)
            peaks["ours+compile"] = peak if np.isnan(peak) else max(peaks.get("ours+compile", 0.0), peak)
    return [(v, float(np.median(times[v])), peaks[v]) for v in variants]


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
    ap.add_argument("--variants", default="stock,ours-unfused,ours,ours+cudnn,ours+compile")
    ap.add_argument("--max-sequence-length", type=int, default=None)
    ap.add_argument("--append", action="store_true", help=f"append the table to {RESULTS}")
    args = ap.parse_args(argv)

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

    def run_stock():
        stock(image=image, prompt=prompt, generator=torch.Generator().manual_seed(0), output_type="np", **common)

    def run_ours(fused: bool):
        return lambda: bb.pipe.generate_video(image, prompt, generator=torch.Generator().manual_seed(0),
                                              fused_cfg=fused, **common)

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - {"stock", "ours-unfused", "ours", "ours+cudnn", "ours+compile"}
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}")
    if not on_gpu and "ours+cudnn" in variants:
        variants.remove("ours+cudnn")

    def prepare(variant: str):
        bb.transformer.reset_attention_backend()
        if variant == "ours+cudnn":
            bb.transformer.set_attention_backend("_native_cudnn")
        if variant == "stock":
            return run_stock
        return run_ours(variant != "ours-unfused")

    rows = _measure(bb, variants, prepare, run_ours, args.repeats, args.device)
    for v, sec, peak in rows:
        print(f"{v:14s} {sec:8.2f} s/video  peak {peak:6.2f} GiB", flush=True)

    base = next((s for v, s, _ in rows if v == "stock"), None)
    device_name = torch.cuda.get_device_name() if on_gpu else f"CPU ({platform.processor() or platform.machine()}, " \
        f"{torch.get_num_threads()} threads)"
    lines = [f"\n## bench_generate: {p.name} {h}x{w}, {frames} frames, {steps} steps, guidance {guidance} "
             f"({dt.date.today()})\n",
             f"Machine: {device_name}; torch {torch.__version__}; dtype {str(dtype).removeprefix('torch.')}; "
             f"median of {args.repeats} (variants interleaved) after one warm-up.\n",
             f"Command: `python benchmarks/bench_generate.py {' '.join(argv if argv is not None else sys.argv[1:])}`\n",
             "\n| variant | s/video | vs stock | peak GiB |\n| --- | --- | --- | --- |\n"]
    for v, s, m in rows:
        ratio = f"{base / s:.2f}x" if base else "-"
        lines.append(f"| {v} | {s:.2f} | {ratio} | {m:.2f} |\n")
    text = "".join(lines)
    print(text)
    if args.append:
        with RESULTS.open("a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
