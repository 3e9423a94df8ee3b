"""`generate_videos`: dream robot videos in batch from (first frame, instruction) pairs.

Inputs: a JSON list / CSV (`image`, `prompt` or `instruction`) or a folder of images with `.txt`
prompts (the cosmos-predict2 batch layout). An "image" may also be an mp4: its first frame is used.
Outputs (DESIGN §4): `<i>_<Instruction>.mp4` + `<i>_<Instruction>.json` (prompt, instruction, image,
seed, model, lora, steps, guidance, fps, ...). Job i is item i // videos_per_prompt, seeded seed + i,
so the result does not depend on how the jobs are sharded. A job is done when both files exist (the
video is written atomically, the sidecar after it): re-running skips finished jobs.
Sharding: `shard=(k, n)` and/or the launcher's RANK / WORLD_SIZE (torchrun, accelerate launch):
job i belongs to global shard i mod (n * world) == k * world + rank.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamgen.data.video import read_video, write_video
from dreamgen.errors import DreamgenError, VideoError, check_number, parse_shard
from dreamgen.io import atomic_write_json, clean_stale_partials_in
from dreamgen.jobs import check_job
from dreamgen.naming import dream_filename, instruction_to_stem
from dreamgen.worldmodel.data import fit_frames
from dreamgen.worldmodel.speed import SpeedSettings, apply_speed, approximating_levers, settings_from_flags

log = logging.getLogger(__name__)

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass
class GenerateConfig:
    model: str  # finetune-wm output folder, diffusers folder, or preset name with `pretrained`
    inputs: str  # JSON / CSV list, or folder of images + .txt prompts
    output_dir: str
    preset: str | None = None
    lora: str | None = None
    seed: int = 0
    num_steps: int | None = None
    guidance: float | None = None
    negative_prompt: str | None = None
    num_frames: int | None = None
    fps: float | None = None
    resolution: list[int] | None = None  # (height, width)
    videos_per_prompt: int = 1
    prompt_prefix: str | None = None  # default: the one the model was fine-tuned with
    shard: str | None = None  # "k/n"
    disable_guardrail: bool = False
    device: str | None = None
    dtype: str = "auto"  # auto (bf16 on GPU) | bf16 | fp16 | fp32
    fused_cfg: bool = True
    compile: bool = False  # torch.compile (mode "default"); compile_mode picks another
    attention_backend: str | None = None  # diffusers attention dispatcher name, e.g. "_native_cudnn", "flash"
    fast: bool = False  # the documented speed stack (speed.FAST); the options below override it
    compile_mode: str | None = None  # default | max-autotune-no-cudagraphs | max-autotune | reduce-overhead | none
    cache: str | None = None  # fbc | taylorseer | faster | mag, optionally KIND:THRESHOLD; none = off
    fp8: bool | None = None  # FP8 linears through torchao (CUDA, compute capability >= 8.9)
    attention_window: str | None = None  # "T,H,W": block-sparse local self-attention (flex)
    limit: int | None = None
    overwrite: bool = False  # discard earlier dreams in output_dir made with other settings


# the settings that decide what a dream looks like (device, dtype, sharding, compile: speed only; the
# approximating speed levers are added by `check_generate_job` when on)
JOB_SETTINGS = ("preset", "lora", "seed", "num_steps", "guidance", "negative_prompt", "num_frames", "fps",
                "resolution", "videos_per_prompt", "prompt_prefix", "disable_guardrail")


@dataclass
class GenerateItem:
    image: str
    instruction: str


def read_inputs(path: str | Path) -> list[GenerateItem]:
    path = Path(path)
    if path.is_dir():
        items = []
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS + (".mp4",))
        for img in images:
            txt = img.with_suffix(".txt")
            if not txt.is_file():
                raise DreamgenError(f"{img}: no prompt file {txt.name} beside it")
            items.append(GenerateItem(str(img), txt.read_text()))
        if not items:
            raise DreamgenError(f"{path}: no images ({', '.join(IMAGE_EXTS)}, .mp4) with .txt prompts found")
    elif path.suffix.lower() == ".json":
        try:
            rows = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DreamgenError(f"{path}: cannot read the input list ({exc})") from None
        if isinstance(rows, dict):
            rows = rows.get("items", rows.get("inputs"))
        if not isinstance(rows, list):
            raise DreamgenError(f"{path}: expected a JSON list of {{image, prompt}} objects")
        items = [_row_item(r, path, n) for n, r in enumerate(rows)]
    elif path.suffix.lower() == ".csv":
        if not path.is_file():
            raise DreamgenError(f"{path}: input list not found")
        with path.open(newline="") as f:
            items = [_row_item(r, path, n) for n, r in enumerate(csv.DictReader(f))]
    else:
        raise DreamgenError(f"{path}: inputs must be a .json / .csv list or a folder of images with .txt prompts")
    for it in items:
        it.instruction = " ".join(it.instruction.split())
        if not it.instruction:
            raise DreamgenError(f"{path}: empty instruction for image {it.image}")
        instruction_to_stem(it.instruction)  # raises for instructions with no usable characters
        if not Path(it.image).is_file():
            raise DreamgenError(f"{path}: image {it.image} not found")
    return items


def _row_item(row: Any, path: Path, n: int) -> GenerateItem:
    if not isinstance(row, dict):
        raise DreamgenError(f"{path}: item {n} is not an object with image and prompt")
    image = row.get("image") or row.get("image_path") or row.get("input_path")
    text = row.get("instruction") or row.get("prompt")
    if not image:
        raise DreamgenError(f"{path}: item {n} has no 'image'")
    if text is None:
        raise DreamgenError(f"{path}: item {n} has no 'prompt' or 'instruction'")
    img = Path(str(image))
    if not img.is_absolute():
        img = path.parent / img
    return GenerateItem(str(img), str(text))


def load_first_frame(path: str | Path) -> np.ndarray:
    path = Path(path)
    if path.suffix.lower() == ".mp4":
        return read_video(path, [0])[0]
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise VideoError(f"{path}: unreadable image ({exc})") from None


def job_shard(cfg_shard: str | None) -> tuple[int, int]:
    """This process's (index, count) among all shards: --shard times the launcher's ranks."""
    k, n = parse_shard(cfg_shard)
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    return k * world + rank, n * world


def _dtype(name: str, device: str) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    table = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    if name not in table:
        raise DreamgenError(f"--precision must be one of auto, {', '.join(table)}; got {name!r}")
    return table[name]


def generate_videos(cfg: GenerateConfig, backbone: Any = None) -> list[Path]:
    """Generate every job of this shard not yet done; returns the videos written by this call.
    `backbone` lets callers (tests, the demo) pass an already loaded model."""
    from tqdm.auto import tqdm

    from dreamgen.worldmodel.backbone import read_model_meta
    from dreamgen.worldmodel.cosmos2 import make_guardrail
    from dreamgen.worldmodel.loading import load_world_model, resolve_model

    for flag, value in (("--sampling-steps", cfg.num_steps), ("--num-frames", cfg.num_frames),
                        ("--videos-per-prompt", cfg.videos_per_prompt), ("--limit", cfg.limit)):
        check_number(flag, value, 1)  # 0 never silently means "the model's default"
    check_number("--fps", cfg.fps, 0, lo_open=True)
    check_number("--guidance", cfg.guidance, 0, 100)
    check_number("--resolution", cfg.resolution, 1)
    items = read_inputs(cfg.inputs)
    jobs = [(i, items[i // cfg.videos_per_prompt]) for i in range(len(items) * cfg.videos_per_prompt)]
    if cfg.limit is not None:
        jobs = jobs[:cfg.limit]
    k, n = job_shard(cfg.shard)
    jobs = [(i, it) for i, it in jobs if i % n == k]
    out = Path(cfg.output_dir)
    check_generate_job(cfg, items, out, record=False)  # refuse other settings before loading a model
    todo = [(i, it) for i, it in jobs if cfg.overwrite or not _done(out, i, it.instruction)]
    log.info("shard %d/%d: %d jobs, %d already done", k, n, len(jobs), len(jobs) - len(todo))
    if not todo:
        return []

    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and "LOCAL_RANK" in os.environ:
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    meta: dict[str, Any] = {}
    lora_used = cfg.lora
    if backbone is None:
        preset, _, own_lora = resolve_model(cfg.model, cfg.preset)
        lora_used = cfg.lora or (str(own_lora) if own_lora else None)
        guardrail = make_guardrail(preset.guardrail and not cfg.disable_guardrail)
        backbone = load_world_model(cfg.model, cfg.preset, cfg.lora, guardrail=guardrail, device=device,
                                    torch_dtype=_dtype(cfg.dtype, device))
        meta = (read_model_meta(cfg.model) or {}) if Path(cfg.model).is_dir() else {}
    preset = backbone.preset
    backbone.pipe.set_progress_bar_config(disable=True)  # one bar per video below, not one per denoising step
    height, width = cfg.resolution or preset.resolution
    num_frames = cfg.num_frames or preset.num_frames
    if (num_frames - 1) % 4:
        raise DreamgenError(f"--num-frames must be 4k+1 (e.g. {num_frames - (num_frames - 1) % 4}), got {num_frames}")
    fps = cfg.fps or preset.fps
    steps = cfg.num_steps or preset.num_inference_steps
    guidance = preset.guidance_scale if cfg.guidance is None else cfg.guidance
    prefix = cfg.prompt_prefix if cfg.prompt_prefix is not None else meta.get("prompt_prefix", "")
    levers = apply_speed(backbone.transformer, speed_settings(cfg), steps)
    check_generate_job(cfg, items, out)  # records the settings (on --overwrite: after clearing old dreams)
    clean_stale_partials_in(out)  # half-written videos of a killed run
    written: list[Path] = []
    warned: set[tuple[int, int]] = set()
    t0 = time.time()
    bar = tqdm(todo, desc=f"dreams {k}/{n}", unit="video", dynamic_ncols=True)
    for i, item in bar:
        image = load_first_frame(item.image)
        if image.shape[:2] != (height, width) and image.shape[:2] not in warned:
            warned.add(image.shape[:2])
            log.warning("%s: image is %dx%d, the model runs at %dx%d: centre-cropped to the aspect ratio and "
                        "resized", item.image, image.shape[0], image.shape[1], height, width)
        image = fit_frames(image[None], height, width)[0][0]
        seed = cfg.seed + i
        prompt = prefix + item.instruction
        frames = backbone.sample(image, prompt, negative_prompt=cfg.negative_prompt, num_frames=num_frames,
                                 num_inference_steps=steps, guidance_scale=guidance, seed=seed, fps=fps,
                                 fused_cfg=cfg.fused_cfg, height=height, width=width)
        video_path = out / dream_filename(i, item.instruction)
        write_video(video_path, frames, fps)
        sidecar = _sidecar(cfg, backbone, item, prompt=prompt, seed=seed, lora=lora_used, steps=steps,
                           guidance=guidance, fps=fps, num_frames=num_frames, size=(height, width))
        sidecar["speed"] = {**levers, "fused_cfg": cfg.fused_cfg}  # the levers this dream was made with
        atomic_write_json(video_path.with_suffix(".json"), sidecar)
        written.append(video_path)
        bar.set_postfix(videos_per_hour=f"{len(written) / max(time.time() - t0, 1e-6) * 3600:.0f}")
    return written


def _sidecar(cfg: GenerateConfig, backbone: Any, item: GenerateItem, *, prompt: str, seed: int, lora: str | None,
             steps: int, guidance: float, fps: float, num_frames: int, size: tuple[int, int]) -> dict[str, Any]:
    """What a dream's JSON records: its settings, and the stock diffusers call that remakes it."""
    preset = backbone.preset
    height, width = size
    sidecar = {"prompt": prompt, "instruction": item.instruction, "image": item.image, "seed": seed,
               "model": str(cfg.model), "lora": lora, "steps": steps, "guidance": guidance, "fps": fps,
               "num_frames": num_frames, "resolution": [height, width],
               "negative_prompt": cfg.negative_prompt if cfg.negative_prompt is not None
               else preset.negative_prompt, "backbone": backbone.kind, "preset": preset.name,
               "guardrail": not cfg.disable_guardrail and bool(preset.guardrail)}
    call = backbone.stock_call(prompt, negative_prompt=cfg.negative_prompt, num_frames=num_frames,
                               num_inference_steps=steps, guidance_scale=guidance, fps=fps, height=height, width=width)
    if call is not None:  # what the stock diffusers pipeline needs to make this video (docs/worldmodel.md)
        sidecar["pipeline_call"] = {**call, "seed": seed}
    return sidecar


def check_generate_job(cfg: GenerateConfig, items: list[GenerateItem], out: Path, record: bool = True) -> None:
    """The resume rule: dreams already in `out` are reused only when made with these settings."""
    model = Path(cfg.model).resolve() if Path(cfg.model).exists() else cfg.model
    settings = {"model": str(model), **{k: getattr(cfg, k) for k in JOB_SETTINGS},
                "inputs": [[str(Path(it.image).resolve()), it.instruction] for it in items]}
    approx = approximating_levers(speed_settings(cfg))
    if approx:  # levers that change the dreams are part of the job (absent when off: older runs resume)
        settings["approximating_levers"] = approx
    has_results = out.is_dir() and any(_DREAM_FILE.match(p.name) for p in out.iterdir())
    check_job(out, "generate", settings, overwrite=cfg.overwrite, has_results=has_results,
              clear=lambda: _clear_dreams(out), record=record)


_DREAM_FILE = re.compile(r"^\d+_.+\.(mp4|json)$")


def _clear_dreams(out: Path) -> None:
    if not out.is_dir():
        return
    for p in out.iterdir():
        if p.is_file() and (_DREAM_FILE.match(p.name) or (p.name.startswith(".") and ".partial" in p.name)):
            p.unlink()


def _done(out: Path, i: int, instruction: str) -> bool:
    video = out / dream_filename(i, instruction)
    return video.is_file() and video.with_suffix(".json").is_file()


def speed_settings(cfg: GenerateConfig) -> SpeedSettings:
    """The speed levers a GenerateConfig asks for (`--fast` and the single-lever options)."""
    compile_opt: bool | str | None = cfg.compile_mode or (True if cfg.compile else None)
    return settings_from_flags(fast=cfg.fast, compile=compile_opt, cache=cfg.cache, fp8=cfg.fp8,
                               attention_backend=cfg.attention_backend, window=cfg.attention_window)


def config_dict(cfg: GenerateConfig) -> dict[str, Any]:
    return asdict(cfg)
