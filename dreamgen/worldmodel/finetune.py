"""`finetune_world_model`: adapt a world model to one robot's videos (LoRA or full), or train the toy
preset from scratch (autoencoder first, then the transformer).

Output folder (self-contained):
  dreamgen_wm.json                  backbone, preset, mode, base model, LoRA file, sampling defaults
  pytorch_lora_weights.safetensors  (LoRA mode; diffusers format with its adapter config (rank, alpha) in
                                    the header, `pipe.load_lora_weights(folder)`)
  model/                            (full / scratch: a diffusers pipeline folder)
  config.json  command.txt  embodiment/  loss.csv  loss.png
  checkpoints/step_XXXXXXX/         trainable weights + optimizer + state, every `save_every` steps

Read top to bottom: helpers (`_resolve_preset`, `_setup`), then the two phases (the autoencoder's in
autoencoder.py), each one loop around a `*_train_step`, then the final artefacts. Checkpoint and loss-log files are in checkpoints.py.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamgen.errors import DreamgenError, OutputExistsError
from dreamgen.io import atomic_write_text
from dreamgen.worldmodel.autoencoder import out_of_time, progress, train_autoencoder
from dreamgen.worldmodel.backbone import MODEL_META, Backbone
from dreamgen.worldmodel.backbones import backbone_class
from dreamgen.worldmodel.checkpoints import (
    latest_checkpoint,
    load_trainable,
    log_loss,
    read_log,
    save_checkpoint,
    write_loss,
)
from dreamgen.worldmodel.config import WorldModelPreset, load_preset
from dreamgen.worldmodel.data import ConcatClips, WorldModelClips
from dreamgen.worldmodel.latents import LatentBank
from dreamgen.worldmodel.loading import LORA_FILE, resolve_model

log = logging.getLogger(__name__)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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
    extra_data: list[str] = field(default_factory=list)  # more sources, trained on together with `data`
    vae_minutes: float | None = None  # wall-time budget of the autoencoder phase (then it moves on)
    minutes: float | None = None  # wall-time budget of the transformer phase (then it saves and finishes)


def finetune_world_model(cfg: FinetuneConfig) -> Path:
    _check(cfg)
    run = _setup(cfg)
    state = latest_checkpoint(run.ckpt_root) if cfg.resume else None
    if state:
        run.log_rows = read_log(run.out / "loss.csv")
        log.info("resuming from %s (step %d, stage %s)", state["path"], state["step"], state["stage"])
    state = train_autoencoder(run, state)
    model = train_transformer(run, state)
    run.accelerator.wait_for_everyone()
    if run.accelerator.is_main_process:
        _write_artifacts(run, run.accelerator.unwrap_model(model))
    run.accelerator.wait_for_everyone()
    return run.out


def _check(cfg: FinetuneConfig) -> None:
    if cfg.mode not in ("lora", "full"):
        raise DreamgenError(f"--mode must be 'lora' or 'full', got {cfg.mode!r}")
    if cfg.init not in ("pretrained", "scratch"):
        raise DreamgenError(f"--init must be 'pretrained' or 'scratch', got {cfg.init!r}")
    if cfg.init == "scratch" and cfg.mode == "lora":
        raise DreamgenError("--init scratch trains every weight: use --mode full (a LoRA needs pretrained weights)")


@dataclass
class _Run:
    """What both phases need, made once by `_setup`."""

    cfg: FinetuneConfig
    preset: WorldModelPreset
    embodiment: Any  # Embodiment | None
    out: Path
    accelerator: Any
    on_gpu: bool
    rng: np.random.Generator
    gen: torch.Generator
    clips: WorldModelClips | ConcatClips
    backbone: Backbone
    base_folder: Path | None
    log_rows: list[dict[str, Any]] = field(default_factory=list)
    steps_done: int = 0  # transformer steps actually trained (a time budget may stop short of train.steps)

    @property
    def ckpt_root(self) -> Path:
        return self.out / "checkpoints"

    def save(self, step: int, stage: str, opt: Any, transformer: Any, **kw: Any) -> None:
        save_checkpoint(self.accelerator, self.ckpt_root, step, stage, self.backbone, opt, transformer,
                        self.log_rows, self.cfg.keep_checkpoints, **kw)


def _resolve_preset(cfg: FinetuneConfig) -> tuple[WorldModelPreset, Any]:
    """The preset with the embodiment's clip shape and the command's overrides; the embodiment (or None)."""
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
    return preset.replace(**changes, train=train, lora=lora), embodiment


def _load_backbone(cfg: FinetuneConfig, preset: WorldModelPreset, precision: str) -> tuple[Backbone, Path | None]:
    """Built from the preset (scratch) or loaded from the base model; returns it and the base folder."""
    if cfg.init == "scratch":
        return backbone_class(preset.backbone).build(preset), None
    base = cfg.pretrained or preset.pretrained
    if not base:
        raise DreamgenError(f"preset {preset.name!r} has no pretrained weights: pass --pretrained <diffusers "
                            "folder> or use --init scratch")
    _, base_folder, _ = resolve_model(base, preset=None if Path(base).is_dir() else cfg.preset)
    base_folder = base_folder.resolve()
    weight_dtype = torch.bfloat16 if precision == "bf16" and cfg.mode == "lora" else None
    return backbone_class(preset.backbone).load(base_folder, preset, torch_dtype=weight_dtype), base_folder


# settings a resumed run may change: how long it trains and where/how often it reports
_RESUME_FREE = {"steps", "vae_steps", "resume", "command", "save_every", "keep_checkpoints", "log_every", "device",
                "vae_minutes", "minutes"}


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _check_resume(out: Path, cfg: FinetuneConfig, preset: WorldModelPreset) -> None:
    """The resume rule (DESIGN §10): a run continued with other settings that shape its output refuses,
    naming them, instead of silently mixing two recipes."""
    old_file = out / "config.json"
    if not old_file.is_file():
        return
    old = _flat(json.loads(old_file.read_text()))
    new = _flat(json.loads(json.dumps({"finetune": asdict(cfg), "preset": preset.to_dict()}, default=str)))
    changed = sorted(k for k in set(old) | set(new) if k.rsplit(".", 1)[-1] not in _RESUME_FREE
                     and old.get(k) != new.get(k))
    if changed:
        raise DreamgenError(f"{out}: cannot --resume with other settings than the run was started with: "
                            f"{', '.join(changed)} differ (start a new output folder)")


def _setup(cfg: FinetuneConfig) -> _Run:
    from accelerate.utils import set_seed

    from dreamgen.accelerate_utils import make_accelerator

    preset, embodiment = _resolve_preset(cfg)
    out = Path(cfg.output_dir)
    if out.exists() and any(out.iterdir()) and not cfg.resume:
        raise OutputExistsError(f"{out}: output folder exists and is not empty (use --resume to continue it)")
    if (out / MODEL_META).is_file():
        raise OutputExistsError(f"{out}: training already finished here")
    if cfg.resume:
        _check_resume(out, cfg, preset)

    on_gpu = (cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    precision = cfg.mixed_precision if cfg.mixed_precision != "auto" else ("bf16" if on_gpu else "no")
    accelerator = make_accelerator(mixed_precision=precision, gradient_accumulation_steps=cfg.grad_accum,
                                   cpu=not on_gpu)
    set_seed(cfg.seed + accelerator.process_index)
    rng = np.random.default_rng(cfg.seed + 1000 * accelerator.process_index)
    gen = torch.Generator().manual_seed(cfg.seed + accelerator.process_index)

    parts = [WorldModelClips(src, preset.num_frames, *preset.resolution,
                             video_key=cfg.video_key or (embodiment.video_key if embodiment else None),
                             prompt_prefix=embodiment.prompt_prefix if embodiment else "",
                             frame_stride=cfg.frame_stride, max_items=cfg.max_videos, cache_bytes=8 << 30)
             for src in [cfg.data, *cfg.extra_data]]
    clips = parts[0] if len(parts) == 1 else ConcatClips(parts)
    log.info("training data: %d videos from %s", len(clips), ", ".join([cfg.data, *cfg.extra_data]))

    backbone, base_folder = _load_backbone(cfg, preset, precision)
    pipe = backbone.pipe
    backbone.to(accelerator.device)
    for module in (pipe.text_encoder, pipe.vae, backbone.transformer):
        module.requires_grad_(False)
    pipe.text_encoder.eval()

    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "command.txt", cfg.command or " ".join(sys.argv))
        atomic_write_text(out / "config.json", json.dumps({"finetune": asdict(cfg), "preset": preset.to_dict()},
                                                          indent=2, default=str))
        if embodiment is not None:
            embodiment.save(out / "embodiment")
    return _Run(cfg, preset, embodiment, out, accelerator, on_gpu, rng, gen, clips, backbone, base_folder)


# ---- phase 2: the transformer --------------------------------------------------------------------


def _trainable_transformer(run: _Run) -> list[torch.nn.Parameter]:
    """Add the LoRA (lora mode) or unfreeze every weight (full); returns the parameters that train."""
    transformer, preset = run.backbone.transformer, run.preset
    if run.cfg.mode == "lora":
        from peft import LoraConfig

        targets = run.backbone.lora_targets()
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
    checkpointing = run.cfg.gradient_checkpointing
    if checkpointing is None:
        checkpointing = preset.train.gradient_checkpointing
    if checkpointing if checkpointing is not None else run.on_gpu:
        transformer.enable_gradient_checkpointing()
    params = [p for p in transformer.parameters() if p.requires_grad]
    if not params:
        raise DreamgenError("nothing to train: no LoRA layer matched the target modules "
                            f"{run.backbone.lora_targets()}")
    return params


def transformer_train_step(run: _Run, model: Any, opt: Any, sched: Any, params: list, empty: torch.Tensor,
                           prompt_cache: dict[str, torch.Tensor], bank: LatentBank | None = None) -> torch.Tensor:
    train, backbone, acc = run.preset.train, run.backbone, run.accelerator
    if bank is not None:
        latents, prompts = bank.sample(run.rng, int(train.batch_size))
        video = None
    else:
        video, prompts = run.clips.sample(run.rng, int(train.batch_size))
    with torch.no_grad():
        if bank is None:
            latents = backbone.encode_video(video)
        cond = torch.cat([_embed(backbone, p, prompt_cache) if run.rng.random() >= train.text_dropout else empty
                          for p in prompts])
    with acc.accumulate(model):
        with acc.autocast():
            loss = backbone.training_loss(latents, cond, video=video, generator=run.gen, model=model)
        acc.backward(loss)
        if acc.sync_gradients:
            acc.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    return loss


def train_transformer(run: _Run, state: dict[str, Any] | None) -> Any:
    """The transformer phase (LoRA or full), resumed from `state`; returns the prepared model."""
    cfg, train, acc = run.cfg, run.preset.train, run.accelerator
    transformer = run.backbone.transformer
    params = _trainable_transformer(run)
    opt = torch.optim.AdamW(params, lr=float(train.lr), weight_decay=float(train.weight_decay))
    warmup = int(train.warmup_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)
    start = 0
    if state and state["stage"] == "transformer" and state["step"] > 0:
        load_trainable(transformer, Path(state["path"]) / "trainable.safetensors")
        opt.load_state_dict(torch.load(Path(state["path"]) / "optimizer.pt", weights_only=True))
        start = state["step"]
        for _ in range(start):
            sched.step()
    model, opt = acc.prepare(transformer, opt)
    steps = int(train.steps)
    empty = run.backbone.dropped_text()  # text dropout target: CFG's unconditional input
    prompt_cache: dict[str, torch.Tensor] = {}
    bank = LatentBank.encode(run.backbone, run.clips) if train.precompute_latents and start < steps else None
    t0 = time.time()
    run.steps_done = start
    for step in progress(range(start, steps), steps, start, "transformer", acc.is_main_process):
        loss = transformer_train_step(run, model, opt, sched, params, empty, prompt_cache, bank)
        run.steps_done = step + 1
        log_loss(run.log_rows, step + 1, "transformer", loss, opt, t0, cfg.log_every, steps)
        last = step + 1 == steps or out_of_time(t0, cfg.minutes, "transformer", step + 1, steps)
        if (cfg.save_every and (step + 1) % cfg.save_every == 0) or last:
            run.save(step + 1, "transformer", opt, transformer, vae_too=cfg.init == "scratch")
        if last:
            break
    return model


# ---- final artefacts -----------------------------------------------------------------------------


def _write_artifacts(run: _Run, transformer: Any) -> None:
    """The LoRA file or the whole diffusers folder, the loss log and dreamgen_wm.json (written last)."""
    cfg, preset, embodiment, out, pipe = run.cfg, run.preset, run.embodiment, run.out, run.backbone.pipe
    meta = {"backbone": run.backbone.kind, "preset": preset.to_dict(), "mode": cfg.mode, "init": cfg.init,
            "steps": int(run.steps_done or preset.train.steps), "fps": preset.fps, "num_frames": preset.num_frames,
            "resolution": preset.resolution,
            "prompt_prefix": embodiment.prompt_prefix if embodiment else "",
            "embodiment": embodiment.name if embodiment else None,
            "transformer_config": dict(transformer.config)}
    write_loss(out, run.log_rows)
    if cfg.mode == "lora":
        from peft.utils import get_peft_model_state_dict

        layers = get_peft_model_state_dict(transformer)
        # the adapter's LoraConfig in the file's header, as diffusers' own training scripts save it: without
        # it diffusers (and dreamgen through it) would load alpha = rank, i.e. at the wrong scale
        type(pipe).save_lora_weights(str(out), transformer_lora_layers=layers, safe_serialization=True,
                                     transformer_lora_adapter_metadata=transformer.peft_config["default"].to_dict())
        meta.update(base_model=str(run.base_folder), lora=LORA_FILE)
    else:
        tmp = out / ".model.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        if transformer.is_gradient_checkpointing:
            transformer.disable_gradient_checkpointing()
        transformer.eval()
        pipe.register_modules(transformer=transformer)
        run.backbone.save(tmp)
        shutil.rmtree(out / "model", ignore_errors=True)
        tmp.rename(out / "model")
        meta.update(base_model="model", lora=None)
    atomic_write_text(out / MODEL_META, json.dumps(meta, indent=2, default=str))
    log.info("world model written to %s", out)


def _embed(backbone: Backbone, prompt: str, cache: dict[str, torch.Tensor]) -> torch.Tensor:
    if prompt not in cache:
        cache[prompt] = backbone.encode_prompts([prompt])
    return cache[prompt]
