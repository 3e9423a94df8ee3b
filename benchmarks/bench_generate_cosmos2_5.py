"""Seconds per generated video and peak memory for Cosmos-Predict2.5: our sampler vs. the stock
`Cosmos2_5_PredictBasePipeline`, on the same random-weight components in one process.

The transformer and VAE have the released 2B architecture (preset cosmos_predict2_5_2b; `--preset
cosmos_predict2_5_14b` for 14B). The text encoder has the released encoder's output shape (28 Qwen2.5-VL
layers x 3584 = 100352 channels, so the transformer's text projection is the real one) with a narrow MLP
and a one-block vision tower: Qwen2.5-VL-7B cannot be fetched here, and prompt encoding is a fixed cost,
the same for both samplers. Speed depends on shapes only, so random weights compare fairly.

    # one GPU, 93 frames, CFG 7: the GR1 size at the full 35 steps, then the released default size (704x1280,
    # ~5x the work per step) at 12 steps so that each command stays under ten minutes (the loop is uniform:
    # s/video scales with steps plus a fixed encode/decode cost)
    python benchmarks/bench_generate_cosmos2_5.py --device cuda --sizes 432x768 --variants stock,ours,ours+cudnn \
        --repeats 1 --append
    python benchmarks/bench_generate_cosmos2_5.py --device cuda --sizes 704x1280 --steps 12 --variants stock,ours \
        --repeats 1 --append
    # the same code path at toy size on a CPU (seconds; no timing value)
    python benchmarks/bench_generate_cosmos2_5.py --tiny

Variants: stock (`__call__`), ours-unfused (our loop, two guidance passes), ours (cond + uncond in one
batch), ours+cudnn (cuDNN attention backend, GPU only), ours+compile (torch.compile of the transformer;
run last, after every size, because compiling changes the shared module).
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_generate import command_line, publish, timed  # noqa: E402

from dreamgen.worldmodel.config import load_preset  # noqa: E402
from dreamgen.worldmodel.cosmos2_5 import Cosmos25Backbone, stock_pipeline  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
VARIANTS = ("stock", "ours-unfused", "ours", "ours+cudnn", "ours+compile")
# released output width (28 x 3584), narrow everywhere else
BENCH_TEXT_ENCODER = {"text": {"hidden_size": 3584, "intermediate_size": 256, "num_hidden_layers": 28,
                               "num_attention_heads": 28, "num_key_value_heads": 4,
                               "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}},
                      "vision": {"depth": 1, "hidden_size": 32, "intermediate_size": 32, "num_heads": 2,
                                 "out_hidden_size": 3584, "fullatt_block_indexes": [0]}}
TINY = dict(  # the toy preset shrunk to seconds on a CPU
    resolution=[16, 16], num_frames=5, num_inference_steps=2, max_sequence_length=32,
    transformer={"in_channels": 9, "out_channels": 8, "num_layers": 1, "num_attention_heads": 2,
                 "attention_head_dim": 16, "text_embed_dim": 32, "adaln_lora_dim": 8, "max_size": [4, 8, 8],
                 "patch_size": [1, 2, 2], "rope_scale": [1, 1, 1], "concat_padding_mask": True,
                 "extra_pos_embed_type": None, "use_crossattn_projection": True,
                 "crossattn_proj_in_channels": 32, "encoder_hidden_states_channels": 32},
    vae={"base_dim": 8, "z_dim": 8, "dim_mult": [1, 2, 2], "num_res_blocks": 1, "temperal_downsample": [True, True]},
    text_encoder={"text": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                           "num_key_value_heads": 1, "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]}},
                  "vision": {"depth": 1, "hidden_size": 8, "intermediate_size": 8, "num_heads": 2,
                             "out_hidden_size": 16, "fullatt_block_indexes": [0]}},
)


def build(preset_name: str, tiny: bool, device: str, dtype: torch.dtype) -> Cosmos25Backbone:
    p = load_preset("cosmos_predict2_5_toy" if tiny else preset_name)
    changes = dict(TINY) if tiny else {"text_encoder": BENCH_TEXT_ENCODER}
    torch.manual_seed(0)
    with torch.device(device):
        bb = Cosmos25Backbone.build(p.replace(tokenizer="builtin", **changes))
    bb.pipe.to(device=device, dtype=dtype)
    bb.pipe.set_progress_bar_config(disable=True)
    return bb


def runners(bb: Cosmos25Backbone, stock, h: int, w: int, frames: int, guidance: float):
    """variant -> a call making one video at this size in `steps` denoising steps."""
    from PIL import Image

    p = bb.preset
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8))
    prompt = "The robot arm is performing a task. Pick up the red cube and place it in the bowl."
    common = dict(image=image, negative_prompt=p.negative_prompt, height=h, width=w, num_frames=frames,
                  guidance_scale=guidance, max_sequence_length=p.max_sequence_length)

    def ours(fused: bool):
        return lambda steps: bb.pipe.generate_video(prompt, generator=torch.Generator().manual_seed(0),
                                                    fused_cfg=fused, num_inference_steps=steps, **common)

    return {"stock": lambda steps: stock(prompt=prompt, generator=torch.Generator().manual_seed(0),
                                         output_type="np", num_inference_steps=steps, **common),
            "ours-unfused": ours(False), "ours": ours(True), "ours+cudnn": ours(True), "ours+compile": ours(True)}


def measure(bb: Cosmos25Backbone, calls: dict, variants: list[str], steps: int, repeats: int, device: str):
    """{variant: (median seconds, peak GiB)}; variants alternate within each repeat so that a noisy machine
    biases none of them. The warm-up is a 2-step video: same shapes (kernels, autotuning, compilation) at a
    fraction of a full video's time."""

    def prepare(v: str):
        bb.transformer.reset_attention_backend()
        if v == "ours+cudnn":
            bb.transformer.set_attention_backend("_native_cudnn")
        return calls[v]

    times: dict[str, list[float]] = {v: [] for v in variants}
    peaks: dict[str, float] = {}
    for v in variants:
        prepare(v)(2)  # warm-up (compiles, for ours+compile)
    for _ in range(repeats):
        for v in variants:
            call = prepare(v)
            sec, peak = timed(lambda: call(steps), device)  # noqa: B023 (called at once)
            times[v].append(sec)
            peaks[v] = peak if np.isnan(peak) else max(peaks.get(v, 0.0), peak)
    bb.transformer.reset_attention_backend()
    return {v: (float(np.median(times[v])), peaks[v]) for v in variants}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cosmos_predict2_5_2b")
    ap.add_argument("--tiny", action="store_true", help="toy-size model on the CPU: checks the code path")
    ap.add_argument("--device", default=None, help="default: cuda if available (cpu with --tiny)")
    ap.add_argument("--dtype", default=None, help="bf16 | fp32 (default: bf16 on GPU, fp32 on CPU)")
    ap.add_argument("--sizes", default=None, help="HxW[,HxW...] (default: 704x1280,432x768; 16x16 with --tiny)")
    ap.add_argument("--frames", type=int, default=None, help="default: 93 (5 with --tiny)")
    ap.add_argument("--steps", type=int, default=None, help="default: 35 (2 with --tiny)")
    ap.add_argument("--guidance", type=float, default=7.0)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--append", action="store_true", help=f"append the table to {RESULTS}")
    args = ap.parse_args(argv)
    args.device = args.device or ("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    args.sizes = args.sizes or ("16x16" if args.tiny else "704x1280,432x768")
    args.frames = args.frames or (5 if args.tiny else 93)
    args.steps = args.steps or (2 if args.tiny else 35)
    return args


def main(argv: list[str] | None = None) -> dict[tuple[int, int], dict[str, tuple[float, float]]]:
    args = parse_args(argv)
    on_gpu = args.device.startswith("cuda")
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype or ("bf16" if on_gpu else "fp32")]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}")
    if not on_gpu and "ours+cudnn" in variants:
        variants.remove("ours+cudnn")
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    bb = build(args.preset, args.tiny, args.device, dtype)
    stock = stock_pipeline(bb)
    stock.set_progress_bar_config(disable=True)
    plain = [v for v in variants if v != "ours+compile"]
    calls = {hw: runners(bb, stock, *hw, args.frames, args.guidance) for hw in sizes}
    results = {hw: measure(bb, calls[hw], plain, args.steps, args.repeats, args.device) for hw in sizes}
    if "ours+compile" in variants:
        bb.transformer.compile(dynamic=False)
        for hw in sizes:
            results[hw].update(measure(bb, calls[hw], ["ours+compile"], args.steps, args.repeats, args.device))
    report(args, argv, bb, dtype, variants, results)
    return results


def report(args, argv, bb, dtype, variants, results) -> None:
    on_gpu = args.device.startswith("cuda")
    machine = torch.cuda.get_device_name() if on_gpu else \
        f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    name = f"{bb.preset.name} (tiny)" if args.tiny else bb.preset.name
    lines = [f"\n## bench_generate_cosmos2_5: {name}, {args.frames} frames, {args.steps} steps, guidance "
             f"{args.guidance} ({dt.date.today()})\n",
             f"Machine: {machine}; torch {torch.__version__}; dtype {str(dtype).removeprefix('torch.')}; "
             f"median of {args.repeats} (variants interleaved) after one warm-up; random weights.\n",
             command_line("bench_generate_cosmos2_5.py", argv),
             "\n| size | variant | s/video | vs stock | peak GiB |\n| --- | --- | --- | --- | --- |\n"]
    for (h, w), rows in results.items():
        base = rows.get("stock", (None,))[0]
        for v in variants:
            sec, peak = rows[v]
            lines.append(f"| {h}x{w} | {v} | {sec:.2f} | {f'{base / sec:.2f}x' if base else '-'} | {peak:.2f} |\n")
    publish(lines, args.append)


if __name__ == "__main__":
    main()
