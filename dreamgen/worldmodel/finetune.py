"""`finetune_world_model`: adapt a world model to one robot's videos (LoRA or full), or train the toy
preset from scratch (autoencoder first, then the transformer).

Output folder (self-contained, DESIGN §4):
  dreamgen_wm.json                  backbone, preset, mode, base model, LoRA file, sampling defaults
  pytorch_lora_weights.safetensors  (LoRA mode; diffusers format, `pipe.load_lora_weights(folder)`)
  model/                            (full / scratch: a diffusers pipeline folder)
  config.json  command.txt  embodiment/  loss.csv  loss.png
  checkpoints/step_XXXXXXX/         trainable weights + optimizer + state, every `save_every` steps
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from dreamgen.errors import DreamgenError, OutputExistsError
from dreamgen.worldmodel.backbone import MODEL_META, Backbone
from dreamgen.worldmodel.backbones import backbone_class
from dreamgen.worldmodel.config import load_preset
from dreamgen.worldmodel.data import WorldModelClips
from dreamgen.worldmodel.loading import LORA_FILE, resolve_model

log = logging.getLogger(__name__)


@dataclass
class FinetuneConfig:
    data: str
    output_dir: str
    preset: str = "toy"
    embodiment: str | None = None
    mode: str = "lora"  # lora | full
    init: str = "pretrained"  # pretrained | scratch
    pretrained: str | None = None  # diffusers folder (default: the preset's `pretrained`)
    lora_rank: int | None = None
    lora_alpha: int | None = None
    lora_targets: list[str] | None = None
    steps: int | None = None
    vae_steps: int | None = None  # scratch only
    batch_size: int | None = None
    lr: float | None = None
    grad_accum: int = 1
    num_frames: int | None = None
    resolution: list[int] | None = None  # (height, width)
    frame_stride: int = 1
    video_key: str | None = None
    mixed_precision: str = "auto"  # auto (bf16 on GPU) | bf16 | no
    gradient_checkpointing: bool | None = None  # default: on for GPU
    save_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    resume: bool = False
    seed: int = 0
    device: str | None = None
    max_videos: int | None = None
    command: str | None = None
    preset_overrides: dict[str, Any] = field(default_factory=dict)  # tests: tiny architectures


def finetune_world_model(cfg: FinetuneConfig) -> Path:
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    if cfg.mode not in ("lora", "full"):
        raise DreamgenError(f"--mode must be 'lora' or 'full', got {cfg.mode!r}")
    if cfg.init not in ("pretrained", "scratch"):
        raise DreamgenError(f"--init must be 'pretrained' or 'scratch', got {cfg.init!r}")
    if cfg.init == "scratch" and cfg.mode == "lora":
        raise DreamgenError("--init scratch trains every weight: use --mode full (a LoRA needs pretrained weights)")

    preset = load_preset(cfg.preset)
    embodiment = None
    changes: dict[str, Any] = dict(cfg.preset_overrides)
    if cfg.embodiment:
        from dreamgen.embodiments import get_embodiment

        embodiment = get_embodiment(cfg.embodiment)
        changes.setdefault("resolution", list(embodiment.wm_resolution))
        changes.setdefault("num_frames", embodiment.wm_num_frames)
        changes.setdefault("fps", embodiment.fps)
    if cfg.resolution:
        changes["resolution"] = list(cfg.resolution)
    if cfg.num_frames:
        changes["num_frames"] = cfg.num_frames
    train = {**asdict(preset.train), **changes.pop("train", {})}
    for key, value in (("steps", cfg.steps), ("vae_steps", cfg.vae_steps), ("batch_size", cfg.batch_size),
                       ("lr", cfg.lr)):
        if value is not None:
            train[key] = value
    lora = {**asdict(preset.lora), **changes.pop("lora", {})}
    for key, value in (("rank", cfg.lora_rank), ("alpha", cfg.lora_alpha), ("targets", cfg.lora_targets)):
        if value is not None:
            lora[key] = value
    preset = preset.replace(**changes, train=train, lora=lora)
    train = preset.train

    out = Path(cfg.output_dir)
    ckpt_root = out / "checkpoints"
    if out.exists() and any(out.iterdir()) and not cfg.resume:
        raise OutputExistsError(f"{out}: output folder exists and is not empty (use --resume to continue it)")
    if (out / MODEL_META).is_file():
        raise OutputExistsError(f"{out}: training already finished here")

    on_gpu = (cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    precision = cfg.mixed_precision if cfg.mixed_precision != "auto" else ("bf16" if on_gpu else "no")
    accelerator = Accelerator(mixed_precision=precision, gradient_accumulation_steps=cfg.grad_accum,
                              cpu=not on_gpu)
    set_seed(cfg.seed + accelerator.process_index)
    rng = np.random.default_rng(cfg.seed + 1000 * accelerator.process_index)
    gen = torch.Generator().manual_seed(cfg.seed + accelerator.process_index)
    main = accelerator.is_main_process

    clips = WorldModelClips(cfg.data, preset.num_frames, *preset.resolution,
                            video_key=cfg.video_key or (embodiment.video_key if embodiment else None),
                            prompt_prefix=embodiment.prompt_prefix if embodiment else "",
                            frame_stride=cfg.frame_stride, max_items=cfg.max_videos)
    log.info("training data: %d videos from %s", len(clips), cfg.data)

    base_folder = None
    if cfg.init == "scratch":
        backbone = backbone_class(preset.backbone).build(preset)
    else:
        base = cfg.pretrained or preset.pretrained
        if not base:
            raise DreamgenError(f"preset {preset.name!r} has no pretrained weights: pass --pretrained <diffusers "
                                "folder> or use --init scratch")
        _, base_folder, _ = resolve_model(base, preset=None if Path(base).is_dir() else cfg.preset)
        base_folder = base_folder.resolve()
        weight_dtype = torch.bfloat16 if precision == "bf16" and cfg.mode == "lora" else None
        backbone = backbone_class(preset.backbone).load(base_folder, preset, torch_dtype=weight_dtype)
    pipe = backbone.pipe
    backbone.to(accelerator.device)
    for module in (pipe.text_encoder, pipe.vae, backbone.transformer):
        module.requires_grad_(False)
    pipe.text_encoder.eval()

    if main:
        out.mkdir(parents=True, exist_ok=True)
        _write_text(out / "command.txt", cfg.command or " ".join(sys.argv))
        _write_text(out / "config.json", json.dumps({"finetune": asdict(cfg), "preset": preset.to_dict()},
                                                   indent=2, default=str))
        if embodiment is not None:
            embodiment.save(out / "embodiment")
    state = _latest_checkpoint(ckpt_root) if cfg.resume else None
    log_rows: list[dict[str, Any]] = _read_log(out / "loss.csv") if state else []
    if state:
        log.info("resuming from %s (step %d, stage %s)", state["path"], state["step"], state["stage"])

    # ---- stage 1 (scratch only): the autoencoder --------------------------------------------
    vae_steps = int(train.vae_steps) if cfg.init == "scratch" else 0
    vae_start = 0
    if state and (state["stage"] == "transformer" or vae_steps):
        vae_path = Path(state["path"]) / "vae.safetensors"
        if vae_path.is_file():
            pipe.vae.load_state_dict(load_file(str(vae_path)))
        if state.get("latents_mean"):
            pipe.vae.register_to_config(latents_mean=state["latents_mean"], latents_std=state["latents_std"])
        vae_start = state["step"] if state["stage"] == "vae" else vae_steps
    if vae_start < vae_steps:
        vae = pipe.vae
        vae.requires_grad_(True).train()
        opt = torch.optim.AdamW(vae.parameters(), lr=float(train.vae_lr), weight_decay=0.0)
        if state and state["stage"] == "vae":
            opt.load_state_dict(torch.load(Path(state["path"]) / "optimizer.pt", weights_only=True))
        vae_model, opt = accelerator.prepare(_VAELoss(vae), opt)
        t0 = time.time()
        for step in _progress(range(vae_start, vae_steps), vae_steps, vae_start, "autoencoder", main):
            video, _ = clips.sample(rng, int(train.batch_size))
            # The autoencoder is convolutional in time: short sub-clips (1 + 4k frames) teach it as well
            # as whole clips at a fraction of the cost (the whole clip costs minutes per step on a CPU).
            k = min(int(train.vae_clip_frames or video.shape[1]), video.shape[1])
            t0_clip = int(rng.integers(video.shape[1] - k + 1))
            video = video[:, t0_clip:t0_clip + k]
            with accelerator.accumulate(vae_model):
                with accelerator.autocast():
                    loss = vae_model(video.to(accelerator.device), float(train.vae_kl_weight))
                accelerator.backward(loss)
                opt.step()
                opt.zero_grad(set_to_none=True)
            _log(log_rows, step + 1, "vae", loss, opt, t0, cfg.log_every, vae_steps)
            if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < vae_steps:
                _save_checkpoint(accelerator, ckpt_root, step + 1, "vae", backbone, opt, None, log_rows, cfg,
                                 vae_too=True)
        vae = accelerator.unwrap_model(vae_model).vae
        vae.requires_grad_(False).eval()
        pipe.register_modules(vae=vae)
        del opt, vae_model
        if main:
            _save_checkpoint(accelerator, ckpt_root, vae_steps, "vae_done", backbone, None, None, log_rows, cfg,
                             vae_too=True, stats_videos=[clips.sample(rng, 1)[0]
                                           for _ in range(int(train.vae_stats_clips))])
        accelerator.wait_for_everyone()
        state = _latest_checkpoint(ckpt_root)
        pipe.vae.register_to_config(latents_mean=state["latents_mean"], latents_std=state["latents_std"])

    # ---- stage 2: the transformer -------------------------------------------------------------
    transformer = backbone.transformer
    if cfg.mode == "lora":
        from peft import LoraConfig

        targets = backbone.lora_targets()
        if not targets:
            raise DreamgenError(f"preset {preset.name!r} names no LoRA target modules")
        transformer.add_adapter(LoraConfig(r=int(preset.lora.rank), lora_alpha=float(preset.lora.alpha),
                                           init_lora_weights="gaussian", target_modules=targets))
        for p in transformer.parameters():
            if p.requires_grad:
                p.data = p.data.float()  # LoRA weights train in float32 even over a bf16 base
    else:
        transformer.requires_grad_(True)
    transformer.train()
    if cfg.gradient_checkpointing if cfg.gradient_checkpointing is not None else on_gpu:
        transformer.enable_gradient_checkpointing()
    params = [p for p in transformer.parameters() if p.requires_grad]
    if not params:
        raise DreamgenError("nothing to train: no LoRA layer matched the target modules "
                            f"{backbone.lora_targets()}")
    opt = torch.optim.AdamW(params, lr=float(train.lr), weight_decay=float(train.weight_decay))
    warmup = int(train.warmup_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)
    start = 0
    if state and state["stage"] == "transformer" and state["step"] > 0:
        _load_trainable(transformer, Path(state["path"]) / "trainable.safetensors")
        opt.load_state_dict(torch.load(Path(state["path"]) / "optimizer.pt", weights_only=True))
        start = state["step"]
        for _ in range(start):
            sched.step()
    model, opt = accelerator.prepare(transformer, opt)
    steps = int(train.steps)
    empty = backbone.encode_prompts([""])  # text dropout target: the empty prompt, as used by CFG
    prompt_cache: dict[str, torch.Tensor] = {}
    t0 = time.time()
    for step in _progress(range(start, steps), steps, start, "transformer", main):
        video, prompts = clips.sample(rng, int(train.batch_size))
        with torch.no_grad():
            latents = backbone.encode_video(video)
            cond = torch.cat([_embed(backbone, p, prompt_cache) if rng.random() >= train.text_dropout else empty
                              for p in prompts])
        with accelerator.accumulate(model):
            with accelerator.autocast():
                loss = backbone.training_loss(latents, cond, video=video, generator=gen, model=model)
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        _log(log_rows, step + 1, "transformer", loss, opt, t0, cfg.log_every, steps)
        if (cfg.save_every and (step + 1) % cfg.save_every == 0) or step + 1 == steps:
            _save_checkpoint(accelerator, ckpt_root, step + 1, "transformer", backbone, opt, transformer, log_rows,
                             cfg, vae_too=cfg.init == "scratch")
    accelerator.wait_for_everyone()

    # ---- final artifacts ---------------------------------------------------------------------
    if main:
        transformer = accelerator.unwrap_model(model)
        meta = {"backbone": backbone.kind, "preset": preset.to_dict(), "mode": cfg.mode, "init": cfg.init,
                "steps": steps, "fps": preset.fps, "num_frames": preset.num_frames,
                "resolution": preset.resolution,
                "prompt_prefix": embodiment.prompt_prefix if embodiment else "",
                "embodiment": embodiment.name if embodiment else None,
                "transformer_config": dict(transformer.config)}
        _write_loss(out, log_rows)
        if cfg.mode == "lora":
            from peft.utils import get_peft_model_state_dict

            layers = get_peft_model_state_dict(transformer)
            type(pipe).save_lora_weights(str(out), transformer_lora_layers=layers, safe_serialization=True)
            meta.update(base_model=str(base_folder), lora=LORA_FILE)
        else:
            tmp = out / ".model.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            if transformer.is_gradient_checkpointing:
                transformer.disable_gradient_checkpointing()
            transformer.eval()
            pipe.register_modules(transformer=transformer)
            backbone.save(tmp)
            shutil.rmtree(out / "model", ignore_errors=True)
            tmp.rename(out / "model")
            meta.update(base_model="model", lora=None)
        _write_text(out / MODEL_META, json.dumps(meta, indent=2, default=str))
        log.info("world model written to %s", out)
    accelerator.wait_for_everyone()
    return out


# ---------------------------------------------------------------------------------------------
class _VAELoss(torch.nn.Module):
    """The autoencoder's loss as a forward pass, so DDP (which syncs gradients on forward) can wrap it:
    L1 + L2 reconstruction of [-1, 1] pixels plus a small KL term."""

    def __init__(self, vae: torch.nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, video: torch.Tensor, kl_weight: float) -> torch.Tensor:
        x = video.permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0
        dist = self.vae.encode(x).latent_dist
        recon = self.vae.decode(dist.sample()).sample
        rec = torch.nn.functional.l1_loss(recon, x) + torch.nn.functional.mse_loss(recon, x)
        return rec + kl_weight * dist.kl().mean()


def _embed(backbone: Backbone, prompt: str, cache: dict[str, torch.Tensor]) -> torch.Tensor:
    if prompt not in cache:
        cache[prompt] = backbone.encode_prompts([prompt])
    return cache[prompt]


def _progress(it, total: int, start: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(it, total=total, initial=start, desc=desc, disable=not enabled, dynamic_ncols=True)


def _log(rows: list, step: int, stage: str, loss: torch.Tensor, opt, t0: float, every: int, total: int) -> None:
    value = float(loss.detach())
    if not math.isfinite(value):
        raise DreamgenError(f"{stage} loss became {value} at step {step}; lower the learning rate")
    if step % max(1, every) == 0 or step == total or step == 1:
        rows.append({"step": step, "stage": stage, "loss": value, "lr": opt.param_groups[0]["lr"],
                     "seconds": round(time.time() - t0, 2)})
        log.debug("%s step %d loss %.4f", stage, step, value)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text)
    tmp.replace(path)


def _read_log(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with path.open() as f:
        return [{"step": int(r["step"]), "stage": r["stage"], "loss": float(r["loss"]), "lr": float(r["lr"]),
                 "seconds": float(r["seconds"])} for r in csv.DictReader(f)]


def _write_loss(out: Path, rows: list[dict[str, Any]]) -> None:
    tmp = out / ".loss.csv.partial"
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["step", "stage", "loss", "lr", "seconds"])
        w.writeheader()
        w.writerows(rows)
    tmp.replace(out / "loss.csv")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        for stage in dict.fromkeys(r["stage"] for r in rows):
            pts = [(r["step"], r["loss"]) for r in rows if r["stage"] == stage]
            ax.plot(*zip(*pts, strict=True), label=stage)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_yscale("log")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "loss.png", dpi=100)
        plt.close(fig)
    except Exception as exc:  # a plot is a convenience: never fail a finished training for it
        log.warning("could not draw loss.png (%s)", exc)


def _trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in module.named_parameters() if p.requires_grad}


def _load_trainable(module: torch.nn.Module, path: Path) -> None:
    tensors = load_file(str(path))
    params = dict(module.named_parameters())
    missing = [n for n in tensors if n not in params]
    if missing:
        raise DreamgenError(f"{path}: checkpoint has weights this model lacks ({missing[:3]}...)")
    with torch.no_grad():
        for n, t in tensors.items():
            params[n].copy_(t)


def _save_checkpoint(accelerator, root: Path, step: int, stage: str, backbone: Backbone, opt, transformer,
                     rows, cfg: FinetuneConfig, vae_too: bool = False, stats_videos=None) -> None:
    if not accelerator.is_main_process:
        return
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:07d}_{stage}"
    tmp = root / f".{final.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    state: dict[str, Any] = {"step": step, "stage": "transformer" if stage == "transformer" else "vae"}
    if stage == "vae_done":
        state["stage"] = "transformer"
        state["step"] = 0
    if transformer is not None:
        save_file(_trainable_state(accelerator.unwrap_model(transformer)), str(tmp / "trainable.safetensors"))
    if vae_too:
        vae = accelerator.unwrap_model(backbone.vae)
        save_file({k: v.detach().cpu().contiguous() for k, v in vae.state_dict().items()},
                  str(tmp / "vae.safetensors"))
    if stats_videos is not None:
        backbone.set_latent_stats(stats_videos)
    state["latents_mean"] = list(backbone.vae.config.latents_mean)
    state["latents_std"] = list(backbone.vae.config.latents_std)
    if opt is not None:
        torch.save(opt.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(state))
    tmp.rename(final)
    _write_loss(root.parent, rows)
    done = sorted((p for p in root.glob("step_*") if (p / "state.json").is_file()), key=_checkpoint_order)
    for old in done[:-max(1, cfg.keep_checkpoints)]:
        shutil.rmtree(old, ignore_errors=True)


def _checkpoint_order(path: Path) -> tuple[bool, int]:
    state = json.loads((path / "state.json").read_text())
    return state["stage"] == "transformer", state["step"]


def _latest_checkpoint(root: Path) -> dict[str, Any] | None:
    if not root.is_dir():
        return None
    done = sorted((p for p in root.glob("step_*") if (p / "state.json").is_file()), key=_checkpoint_order)
    if not done:
        return None
    state = json.loads((done[-1] / "state.json").read_text())
    state["path"] = str(done[-1])
    return state


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
