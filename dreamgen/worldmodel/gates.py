"""Quality gates for the speed levers (speed.py): a lever ships only when its gate passes.

- Numerics-only levers (compile, attention backend): `numerics_gate` — relative error of the output
  latents vs the stock path, ||fast - stock|| / ||stock|| <= 1e-2.
- Approximating levers (step cache, FP8, window attention): `dream_gate` — dreams from the same first
  frames and seeds on both paths: mean PSNR of each fast dream to its stock-path dream >= 30 dB, and the
  ToyWorld pixel judge's pass rate of the fast dreams inside the 95% Wilson interval of the stock path's.
  `run_dream_gate` makes both sets with one loaded world model (>= 32 held-out first frames for a verdict).

    python -m dreamgen.worldmodel.gates checkpoints/toyworld_wm demo_data/toyworld_pick_place out.json \
        --num 32 --cache fbc:0.1      # one approximating setting vs the stock path
"""

from __future__ import annotations

import argparse
import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from dreamgen.intervals import wilson_interval
from dreamgen.worldmodel.evaluate import psnr
from dreamgen.worldmodel.speed import SpeedSettings, apply_speed, settings_from_flags

MAX_REL_ERROR = 1e-2
MIN_PSNR = 30.0
MIN_GATE_VIDEOS = 32


@dataclass
class GateResult:
    passed: bool
    kind: str  # "numerics" | "dreams"
    figures: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def latent_rel_error(fast: torch.Tensor, stock: torch.Tensor) -> float:
    """||fast - stock|| / ||stock|| over the whole tensor, in float64."""
    fast, stock = fast.double(), stock.double()
    return float((fast - stock).norm() / stock.norm().clamp_min(1e-30))


def numerics_gate(fast: torch.Tensor, stock: torch.Tensor, tol: float = MAX_REL_ERROR) -> GateResult:
    err = latent_rel_error(fast, stock)
    ok = err <= tol
    return GateResult(ok, "numerics", {"rel_error": err, "tol": tol},
                      "" if ok else f"latents differ from the stock path by {err:.3g} (> {tol:g})")


def dream_gate(stock: list[np.ndarray], fast: list[np.ndarray], instructions: list[str],
               judge: Callable[[np.ndarray, str], bool] | None = None, min_psnr: float = MIN_PSNR,
               min_videos: int = MIN_GATE_VIDEOS) -> GateResult:
    """PSNR of each fast dream to its stock-path dream (same first frame, same seed) and the judge's
    pass rates. Fewer than `min_videos` pairs report the figures but never pass."""
    if not (len(stock) == len(fast) == len(instructions)) or not stock:
        raise ValueError("need the same, non-zero number of stock dreams, fast dreams and instructions")
    judge = judge or toyworld_judge
    psnrs = [psnr(a, b) for a, b in zip(fast, stock, strict=True)]
    stock_ok = sum(bool(judge(v, ins)) for v, ins in zip(stock, instructions, strict=True))
    fast_ok = sum(bool(judge(v, ins)) for v, ins in zip(fast, instructions, strict=True))
    n = len(stock)
    lo, hi = wilson_interval(stock_ok, n)
    rate = fast_ok / n
    figures = {"n": n, "psnr_mean": float(np.mean(psnrs)), "psnr_min": float(np.min(psnrs)),
               "stock_pass_rate": stock_ok / n, "stock_interval": [lo, hi], "fast_pass_rate": rate,
               "min_psnr": min_psnr}
    reasons = []
    if n < min_videos:
        reasons.append(f"only {n} videos (a verdict needs >= {min_videos})")
    if figures["psnr_mean"] < min_psnr:
        reasons.append(f"PSNR to the stock path {figures['psnr_mean']:.1f} dB < {min_psnr:g}")
    if not lo <= rate <= hi:
        reasons.append(f"judge pass rate {rate:.2f} outside the stock path's 95% interval [{lo:.2f}, {hi:.2f}]")
    return GateResult(not reasons, "dreams", figures, "; ".join(reasons))


def toyworld_judge(frames: np.ndarray, instruction: str) -> bool:
    """The ToyWorld pixel judge's verdict; an instruction it cannot parse counts as a failure."""
    from dreamgen.errors import DreamgenError
    from dreamgen.toyworld.pixel_judge import judge_frames

    try:
        return judge_frames(frames, instruction).success
    except DreamgenError:
        return False


def with_speed(backbone: Any, settings: SpeedSettings, num_inference_steps: int | None = None) -> tuple[Any, dict]:
    """A second backbone sharing every component with `backbone` except a copy of its transformer,
    which gets `settings` (the stock one stays untouched). Returns (backbone, the levers' record)."""
    pipe = copy.copy(backbone.pipe)
    transformer = copy.deepcopy(backbone.transformer)
    record = apply_speed(transformer, settings, num_inference_steps)
    pipe.register_modules(transformer=transformer)
    return type(backbone)(pipe, backbone.preset), record


def run_dream_gate(backbone: Any, settings: SpeedSettings, items: list[tuple[np.ndarray, str]], *, seed: int = 0,
                   steps: int | None = None, guidance: float | None = None, num_frames: int | None = None,
                   fps: float | None = None, judge: Callable | None = None,
                   min_videos: int = MIN_GATE_VIDEOS) -> GateResult:
    """Dream every (first frame, instruction) on the stock path and with `settings`; gate the pair."""
    p = backbone.preset
    kw = dict(negative_prompt=None, num_frames=num_frames or p.num_frames,
              num_inference_steps=steps or p.num_inference_steps,
              guidance_scale=p.guidance_scale if guidance is None else guidance, fps=fps or p.fps)
    fast_bb, record = with_speed(backbone, settings, kw["num_inference_steps"])
    stock, fast = [], []
    for i, (image, instruction) in enumerate(items):
        stock.append(backbone.sample(image, instruction, seed=seed + i, **kw))
        fast.append(fast_bb.sample(image, instruction, seed=seed + i, **kw))
    result = dream_gate(stock, fast, [ins for _, ins in items], judge=judge, min_videos=min_videos)
    result.figures["levers"] = record
    return result


def held_out_items(held_out: str, num: int, preset: Any) -> list[tuple[np.ndarray, str]]:
    """(first frame, instruction) of the first `num` clips of a dataset, at the model's resolution."""
    from dreamgen.worldmodel.data import WorldModelClips

    height, width = preset.resolution
    clips = WorldModelClips(held_out, 1, height, width)
    return [(clips.clip(i, 0)[0], clips.items[i].instruction) for i in range(min(num, len(clips)))]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("held_out", help="dataset whose clips' first frames and instructions are dreamed from")
    ap.add_argument("output", help="JSON file for the gate's figures")
    ap.add_argument("--num", type=int, default=MIN_GATE_VIDEOS)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--fast", action="store_true")
    ap.add_argument("--cache", default=None)
    ap.add_argument("--fp8", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--attention-window", default=None)
    args = ap.parse_args(argv)
    from dreamgen.worldmodel.loading import load_world_model

    settings = settings_from_flags(fast=args.fast, compile="none", cache=args.cache, fp8=args.fp8,
                                   window=args.attention_window)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    bb = load_world_model(args.model, device=device)
    bb.pipe.set_progress_bar_config(disable=True)
    result = run_dream_gate(bb, settings, held_out_items(args.held_out, args.num, bb.preset), steps=args.steps)
    Path(args.output).write_text(json.dumps(result.to_dict(), indent=2))
    print(json.dumps(result.to_dict(), indent=2))


if __name__ == "__main__":
    main()
