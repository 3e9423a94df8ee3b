"""World-model quality: PSNR / SSIM of generated vs. real continuations, against the baseline that
copies the first frame (a model that learned nothing about motion scores the baseline or worse).

    python -m dreamgen.worldmodel.evaluate MODEL HELD_OUT_DATA OUT_DIR --num 32

takes the first `num_frames` of each held-out video (a dataset or a folder of mp4 + txt), dreams from
its first frame and instruction, and writes `OUT_DIR/metrics.json`: PSNR/SSIM full-frame, PSNR on
foreground pixels (foreground.py: what moves) and per frame index, each beside the copy-the-first-frame
baseline; `--judge` adds the ToyWorld pixel judge's pass rate of the dreams (and of the real clips, the
judge's own ceiling). `--vae-only` instead round-trips whole clips through the autoencoder alone
(`OUT_DIR/vae_roundtrip.json`, per frame index: a causal VAE can fail late in a clip only): the ceiling on
what dreams can show.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dreamgen.data.video import read_video, write_video
from dreamgen.errors import DreamgenError
from dreamgen.worldmodel.foreground import foreground_mask_uint8, masked_psnr


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 arrays of equal shape, in dB (capped at 100)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 100.0 if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity of uint8 frames (..., H, W, 3): 11x11 Gaussian window (sigma 1.5),
    per channel, the constants of Wang et al. 2004."""
    x = torch.from_numpy(a.reshape(-1, *a.shape[-3:])).permute(0, 3, 1, 2).double()
    y = torch.from_numpy(b.reshape(-1, *b.shape[-3:])).permute(0, 3, 1, 2).double()
    size = min(11, x.shape[-1], x.shape[-2])
    g = torch.exp(-((torch.arange(size, dtype=torch.float64) - (size - 1) / 2) ** 2) / (2 * 1.5 ** 2))
    g = g / g.sum()
    win = (g[:, None] * g[None, :]).expand(3, 1, size, size).contiguous()

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, win, groups=3)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return float(s.mean())


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def frame_psnrs(a: np.ndarray, b: np.ndarray) -> list[float]:
    """PSNR of each frame index of two uint8 (T, H, W, 3) videos."""
    return [psnr(x, y) for x, y in zip(a, b, strict=True)]


def _per_index(rows: list[dict[str, Any]], key: str) -> list[float]:
    n = max(len(r[key]) for r in rows)
    return [float(np.mean([r[key][t] for r in rows if t < len(r[key])])) for t in range(n)]


def evaluate_continuations(generated: list[np.ndarray], real: list[np.ndarray]) -> dict[str, Any]:
    """Scores frames 1.. of each generated video against the real ones (frame 0 is the given image),
    and the same for the copy-the-first-frame baseline: full frame, on the real clip's foreground pixels
    (`fg_`, foreground.py) and per frame index (`per_frame_`, index 0 = frame 1)."""
    if len(generated) != len(real) or not real:
        raise ValueError("need the same, non-zero number of generated and real videos")
    rows = []
    for gen, ref in zip(generated, real, strict=True):
        n = min(len(gen), len(ref))
        if n < 2:
            raise ValueError("videos need at least 2 frames to score a continuation")
        fg = foreground_mask_uint8(ref[:n])[1:]
        base = np.repeat(ref[:1], n - 1, axis=0)
        gen, ref = gen[1:n], ref[1:n]
        rows.append({"psnr": psnr(gen, ref), "ssim": ssim(gen, ref),
                     "baseline_psnr": psnr(base, ref), "baseline_ssim": ssim(base, ref),
                     "fg_psnr": masked_psnr(gen, ref, fg), "baseline_fg_psnr": masked_psnr(base, ref, fg),
                     "frames": frame_psnrs(gen, ref), "baseline_frames": frame_psnrs(base, ref)})
    summary: dict[str, Any] = {k: _mean([r[k] for r in rows]) for k in rows[0] if "frames" not in k}
    summary["per_frame_psnr"] = _per_index(rows, "frames")
    summary["per_frame_baseline_psnr"] = _per_index(rows, "baseline_frames")
    summary["num_videos"] = len(rows)
    summary["per_video"] = [{k: v for k, v in r.items() if "frames" not in k} for r in rows]
    return summary


def judge_pass_rate(videos: list[np.ndarray], instructions: list[str]) -> dict[str, Any]:
    """The ToyWorld pixel judge's verdicts on `videos`: pass rate and the per-video verdicts."""
    from dreamgen.toyworld.pixel_judge import judge_frames

    verdicts = [judge_frames(v, text) for v, text in zip(videos, instructions, strict=True)]
    return {"pass_rate": float(np.mean([v.success for v in verdicts])), "num": len(verdicts),
            "verdicts": [{"success": v.success, "reason": v.reason} for v in verdicts]}


def evaluate_world_model(model: str, held_out: str, output_dir: str, num: int = 32, seed: int = 0,
                         judge: bool = False, **generate_options: Any) -> dict[str, Any]:
    """Dream from the first frame of `num` held-out clips and score against their real continuation
    (`judge`: also the ToyWorld pixel judge's pass rate of dreams and real clips)."""
    from dreamgen.worldmodel.data import WorldModelClips
    from dreamgen.worldmodel.generate import GenerateConfig, generate_videos
    from dreamgen.worldmodel.loading import resolve_model

    preset, _, _ = resolve_model(model, generate_options.get("preset"))
    height, width = generate_options.get("resolution") or preset.resolution
    num_frames = generate_options.get("num_frames") or preset.num_frames
    clips = WorldModelClips(held_out, num_frames, height, width)
    out = Path(output_dir)
    real_dir = out / "real"
    real_dir.mkdir(parents=True, exist_ok=True)
    items, real = [], []
    for i in range(min(num, len(clips))):
        clip = clips.clip(i, 0)
        path = real_dir / f"{i}.mp4"
        if not path.is_file():
            write_video(path, clip, preset.fps)
        real.append(read_video(path))  # compare against the encoded clip, as the dreams are encoded too
        items.append({"image": str(path), "instruction": clips.items[i].instruction})
    (out / "inputs.json").write_text(json.dumps(items, indent=2))
    cfg = GenerateConfig(model=model, inputs=str(out / "inputs.json"), output_dir=str(out / "dreams"), seed=seed,
                         **generate_options)
    generate_videos(cfg)
    from dreamgen.naming import dream_filename

    generated = [read_video(out / "dreams" / dream_filename(i, it["instruction"])) for i, it in enumerate(items)]
    summary = evaluate_continuations(generated, real)
    if judge:
        instructions = [it["instruction"] for it in items]
        summary["judge"] = judge_pass_rate(generated, instructions)
        summary["real_judge"] = judge_pass_rate(real, instructions)
    summary.update(model=model, held_out=held_out, num_frames=num_frames, resolution=[height, width])
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    return summary


def vae_roundtrip(model: str, held_out: str, num: int = 8, num_frames: int | None = None,
                  device: str | None = None, sheet: str | Path | None = None) -> dict[str, Any]:
    """Encode and decode `num` held-out clips with the model's autoencoder; PSNR/SSIM against the input,
    full frame, on foreground pixels (`fg_psnr`) and per frame index (`per_frame_psnr`, `min_frame_psnr`).

    An upper bound on dream quality: what the autoencoder loses (small objects, thin links) no
    transformer can put back. `num_frames` (default: the model's clip length, the length it is used at)
    must be 1 + 4k for the Wan autoencoder (4x in time); being causal, it can fail late in a clip only.
    `sheet`: a PNG with input | reconstruction (first and last frame) of up to 4 clips.
    """
    from diffusers import AutoencoderKLWan

    from dreamgen.worldmodel.data import WorldModelClips
    from dreamgen.worldmodel.loading import resolve_model

    preset, folder, _ = resolve_model(model)
    num_frames = num_frames or preset.num_frames
    if num_frames < 1 or (num_frames - 1) % 4:
        raise DreamgenError(f"num_frames must be 1 + 4k (the autoencoder is 4x in time), got {num_frames}")
    if not (folder / "vae").is_dir():
        raise DreamgenError(f"{folder}: no vae/ folder (only Wan-autoencoder world models are supported here)")
    height, width = preset.resolution
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    vae = AutoencoderKLWan.from_pretrained(folder / "vae").to(dev).float().eval()  # a packed fp16 model too
    clips = WorldModelClips(held_out, num_frames, height, width)
    rows, pairs = [], []
    for i in range(min(num, len(clips))):
        clip = clips.clip(i, 0)  # uint8 (T, H, W, 3)
        x = torch.from_numpy(clip).to(dev).float().permute(3, 0, 1, 2)[None] / 127.5 - 1
        with torch.no_grad():
            y = vae.decode(vae.encode(x).latent_dist.mode()).sample
        rec = ((y[0].permute(1, 2, 3, 0).clamp(-1, 1) + 1) * 127.5).round().byte().cpu().numpy()
        rows.append({"psnr": psnr(rec, clip), "ssim": ssim(rec, clip),
                     "fg_psnr": masked_psnr(rec, clip, foreground_mask_uint8(clip)), "frames": frame_psnrs(rec, clip)})
        if sheet is not None and i < 4:
            pairs.append(np.concatenate([clip[0], rec[0], clip[-1], rec[-1]], axis=1))
    if sheet is not None and pairs:
        from PIL import Image

        img = np.concatenate(pairs, axis=0)
        Image.fromarray(img).resize((img.shape[1] * 2, img.shape[0] * 2), Image.NEAREST).save(sheet)
    per_frame = _per_index(rows, "frames")
    return {"psnr": _mean([r["psnr"] for r in rows]), "ssim": _mean([r["ssim"] for r in rows]),
            "fg_psnr": _mean([r["fg_psnr"] for r in rows]), "per_frame_psnr": per_frame,
            "min_frame_psnr": min(per_frame), "num_clips": len(rows), "num_frames": num_frames,
            "per_clip": [{k: v for k, v in r.items() if k != "frames"} for r in rows]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("held_out")
    ap.add_argument("output_dir")
    ap.add_argument("--num", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-steps", type=int, default=None)
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--num-frames", type=int, default=None, help="frames per clip (default: the model's)")
    ap.add_argument("--judge", action="store_true", help="also the ToyWorld pixel judge's pass rate of the dreams")
    ap.add_argument("--vae-only", action="store_true",
                    help="only round-trip --num whole clips through the autoencoder (no dreaming)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if args.vae_only:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        v = vae_roundtrip(args.model, args.held_out, num=args.num, num_frames=args.num_frames, device=args.device,
                          sheet=Path(args.output_dir) / "vae_roundtrip.png")
        (Path(args.output_dir) / "vae_roundtrip.json").write_text(json.dumps(v, indent=2))
        print(f"{v['num_clips']} clips x {v['num_frames']} frames  autoencoder round trip PSNR {v['psnr']:.2f} dB  "
              f"(worst frame index {v['min_frame_psnr']:.2f}, foreground {_fmt(v['fg_psnr'])})  SSIM {v['ssim']:.4f}")
        return
    s = evaluate_world_model(args.model, args.held_out, args.output_dir, num=args.num, seed=args.seed,
                             judge=args.judge, num_steps=args.num_steps, guidance=args.guidance, device=args.device,
                             num_frames=args.num_frames)
    print(f"{s['num_videos']} videos  model PSNR {s['psnr']:.2f} dB (foreground {_fmt(s['fg_psnr'])})  SSIM "
          f"{s['ssim']:.4f}  |  copy-first-frame PSNR {s['baseline_psnr']:.2f} dB (foreground "
          f"{_fmt(s['baseline_fg_psnr'])})  SSIM {s['baseline_ssim']:.4f}"
          + (f"  |  pixel judge: dreams {s['judge']['pass_rate']:.0%}, real {s['real_judge']['pass_rate']:.0%}"
             if "judge" in s else ""))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} dB"


if __name__ == "__main__":
    main()
