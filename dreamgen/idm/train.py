"""IDM training: one loop, readable in a sitting (nanoGPT-style).

Through accelerate, as the world model and the policy: single process on CPU or one GPU; DDP when
launched by torchrun / `accelerate launch` (one process per GPU). bf16 autocast on GPU. The loader keeps
its own (distributed) sampler, seeded by the step, so a resumed run sees the batches an unbroken one would.
Checkpoints every `save_steps` into
`output_dir/checkpoint-<step>/` (self-contained, see checkpoint.py); `resume` continues from the newest.
Validation loss is measured on held-out episodes (the last `val_fraction` of the dataset).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamgen.embodiments import Embodiment, get_embodiment
from dreamgen.errors import DreamgenError, OutputExistsError, check_finite_loss
from dreamgen.idm.checkpoint import CHECKPOINT_RE, latest_checkpoint, save_checkpoint
from dreamgen.idm.configuration_idm import IDMConfig, resolve_model_config
from dreamgen.idm.data import IDMClips, IDMEpisode, IDMWindows, action_stats, load_dataset_episodes
from dreamgen.io import safe_torch_load

log = logging.getLogger(__name__)

# The reference's --data-config names -> our built-in embodiments (whose modality.json carries the layout).
REFERENCE_DATA_CONFIGS = {
    "gr1_arms_only": "gr1", "gr1_arms_waist": "gr1", "gr1_full_upper_body": "gr1",
    "so100": "so100", "franka": "franka", "single_panda_gripper": "robocasa",
    "bimanual_panda_gripper": "robocasa", "bimanual_panda_hand": "robocasa",
}


@dataclass
class IDMTrainConfig:
    dataset_path: str | Path | None = None
    output_dir: str | Path = "runs/idm"
    embodiment: str | Path = "new_embodiment"  # name, alias, file/folder; new_embodiment = dataset's meta/
    model_config: str | Path | dict | None = None  # preset name under configs/idm/, YAML path, or field dict
    data_config: str | Path | None = None  # a reference name (gr1_arms_only, ...) or YAML of IDM data overrides
    batch_size: int = 16
    max_steps: int = 10000
    save_steps: int = 500
    save_total_limit: int = 8
    eval_steps: int | None = None  # defaults to save_steps
    log_steps: int = 10
    learning_rate: float = 1e-4
    weight_decay: float = 1e-5
    warmup_ratio: float = 0.05
    grad_clip: float = 1.0
    val_fraction: float = 0.1
    max_val_samples: int = 512
    num_workers: int = 0
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp32
    device: str = "auto"
    augment: bool = True
    tune_encoder: bool = True
    stats: str = "dataset"  # normalise actions with stats from the training episodes, or "embodiment"'s
    preload: bool | None = None  # None: preload unless the dataset is too big for memory
    resume: bool = False
    seed: int = 42
    # in-memory episodes instead of dataset_path (tests, synthetic data); need `embodiment` as an object
    episodes: list[IDMEpisode] | None = field(default=None, repr=False)
    embodiment_obj: Embodiment | None = field(default=None, repr=False)


def resolve_embodiment(cfg: IDMTrainConfig) -> Embodiment:
    if cfg.embodiment_obj is not None:
        return cfg.embodiment_obj
    spec = str(cfg.embodiment)
    if spec == "new_embodiment" and cfg.data_config in REFERENCE_DATA_CONFIGS:
        spec = REFERENCE_DATA_CONFIGS[str(cfg.data_config)]
    emb = get_embodiment(spec, dataset=cfg.dataset_path)
    if cfg.data_config and str(cfg.data_config) not in REFERENCE_DATA_CONFIGS:
        path = Path(cfg.data_config)
        if not path.is_file():
            raise DreamgenError(f"--data-config {cfg.data_config!r}: not a file and not one of "
                                f"{sorted(REFERENCE_DATA_CONFIGS)}")
        import yaml

        from dreamgen.embodiments import IDMDataConfig

        over = yaml.safe_load(path.read_text()) or {}
        over = over.get("idm", over)
        try:
            emb.idm = IDMDataConfig(**{**asdict(emb.idm), **over})
        except TypeError as exc:
            raise DreamgenError(f"{path}: {exc}") from None
    return emb


def build_model_config(cfg: IDMTrainConfig, emb: Embodiment, action_dim: int, state_dim: int = 0) -> IDMConfig:
    fields_ = dict(cfg.model_config) if isinstance(cfg.model_config, dict) else resolve_model_config(cfg.model_config)
    fields_.setdefault("observation_offsets", list(emb.idm.observation_offsets))
    fields_.setdefault("action_horizon", emb.idm.action_horizon)
    fields_.setdefault("image_size", list(emb.idm_image_size))
    fields_["action_dim"] = action_dim
    if fields_.get("kind") == "state":
        fields_["state_dim"] = state_dim
    return IDMConfig.from_dict(fields_)


def make_training_set(model_cfg: IDMConfig, episodes: list[IDMEpisode], emb: Embodiment):
    """Windows (frames at the offsets, action chunk) for a flow IDM; clips with per-frame state for a state IDM."""
    if model_cfg.kind == "state":
        norm_state = emb.normalize_state if model_cfg.state_dim else None
        return IDMClips(episodes, model_cfg.clip_length, norm_state, emb.normalize_action,
                        stride=max(1, model_cfg.clip_length // 4))
    return IDMWindows(episodes, model_cfg.observation_offsets, model_cfg.action_horizon, emb.normalize_action)


def split_episodes(n: int, val_fraction: float) -> tuple[list[int], list[int]]:
    """Held-out episodes are the last ones (deterministic: the same split on resume and in evaluation)."""
    if n < 2 or val_fraction <= 0:
        return list(range(n)), []
    n_val = min(n - 1, max(1, round(n * val_fraction)))
    return list(range(n - n_val)), list(range(n - n_val, n))


def augment_frames(frames: torch.Tensor, generator: torch.Generator | None = None, crop: bool = True) -> torch.Tensor:
    """The reference's augmentations, on uint8 (B, F, H, W, 3): one random 95% crop per sample
    (the same for all its frames, so motion is preserved) resized back, plus brightness/contrast jitter.
    A state IDM reads absolute positions off the image, so it takes `crop=False` (jitter only)."""
    b, f, h, w, _ = frames.shape
    x = frames.permute(0, 1, 4, 2, 3).float().reshape(b, f * 3, h, w)
    ch, cw = max(1, round(h * 0.95)), max(1, round(w * 0.95))
    out = x.clone() if not crop else torch.empty_like(x)
    for i in range(b if crop else 0):
        y0 = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
        x0 = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
        crop = x[i:i + 1, :, y0:y0 + ch, x0:x0 + cw]
        out[i] = torch.nn.functional.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)[0]
    bright = 1 + (torch.rand(b, 1, 1, 1, generator=generator) - 0.5) * 0.6
    contrast = 1 + (torch.rand(b, 1, 1, 1, generator=generator) - 0.5) * 0.8
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = ((out - mean) * contrast.to(out) + mean) * bright.to(out)
    return out.clamp(0, 255).round().to(torch.uint8).reshape(b, f, 3, h, w).permute(0, 1, 3, 4, 2)


def _lr_lambda(warmup: int, total: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return f


@torch.no_grad()
def validation_loss(model, dataset: IDMWindows, batch_size: int, device, autocast, max_samples: int) -> float:
    """Flow-matching loss on held-out windows with fixed noise and times: comparable across steps."""
    model.eval()
    n = len(dataset)
    idx = np.linspace(0, n - 1, min(n, max_samples)).round().astype(int)
    gen = torch.Generator().manual_seed(1234)
    total, count = 0.0, 0
    kwargs = {"generator": gen} if model.config.kind == "flow" else {}
    for i in range(0, len(idx), batch_size):
        items = [dataset[int(j)] for j in idx[i:i + batch_size]]
        tensors = [torch.stack([it[k] for it in items]).to(device) for k in range(len(items[0]))]
        with autocast():
            loss = model(*tensors, **kwargs)
        total += float(loss) * len(items)
        count += len(items)
    model.train()
    return total / max(count, 1)


def _estimate_bytes(dataset_path, image_size) -> int:
    from dreamgen.data import open_dataset

    return open_dataset(dataset_path).num_frames * int(image_size[0]) * int(image_size[1]) * 3


@dataclass
class _Run:
    """Everything one training run holds: set up once, then advanced one step at a time."""

    cfg: IDMTrainConfig
    accelerator: Any
    out_dir: Path
    emb: Embodiment
    model_cfg: IDMConfig
    train_set: Any
    val_set: Any
    state_base: dict[str, Any]
    model: Any = None
    ddp_model: Any = None
    opt: Any = None
    sched: Any = None
    params: list = field(default_factory=list)
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def use_bf16(self) -> bool:
        return self.accelerator.mixed_precision == "bf16"

    def autocast(self):
        return self.accelerator.autocast()


def _accelerator(cfg: IDMTrainConfig) -> Any:
    """One process per GPU under torchrun / `accelerate launch`; bf16 autocast on CUDA (precision auto);
    TF32 on CUDA. An indexed device (cuda:1) is this single process's GPU."""
    from dreamgen.accelerate_utils import make_accelerator

    if cfg.precision not in ("auto", "bf16", "fp32"):
        raise DreamgenError(f"precision must be auto, bf16 or fp32, got {cfg.precision!r}")
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)
    if device.type == "cuda":
        if device.index is not None and "LOCAL_RANK" not in os.environ:
            torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    return make_accelerator(mixed_precision="bf16" if use_bf16 else "no", cpu=device.type == "cpu")


def _episodes(cfg: IDMTrainConfig, emb: Embodiment) -> list[IDMEpisode]:
    if cfg.episodes is not None:
        return list(cfg.episodes)
    if cfg.dataset_path is None:
        raise DreamgenError("no --dataset-path given")
    from dreamgen.data import open_dataset

    ds = open_dataset(cfg.dataset_path)
    emb.check_widths(None, ds.action_dim, str(cfg.dataset_path))
    image_size = build_model_config(cfg, emb, emb.action_dim).image_size
    preload = cfg.preload
    if preload is None:
        preload = _estimate_bytes(cfg.dataset_path, image_size) < 6 * 2**30
    return load_dataset_episodes(cfg.dataset_path, emb.video_key, image_size, preload=preload)


def _data(cfg: IDMTrainConfig, resume_from: Path | None) -> tuple[Embodiment, IDMConfig, Any, Any, dict]:
    """The embodiment (with the normalisation statistics), the model config, train/val sets, provenance."""
    emb = resolve_embodiment(cfg)
    all_eps = _episodes(cfg, emb)
    train_ids, val_ids = split_episodes(len(all_eps), cfg.val_fraction)
    action_dim = all_eps[0].action.shape[1]
    emb.check_widths(None, action_dim, str(cfg.dataset_path or "episodes"))
    state_dim = all_eps[0].state.shape[1] if all(ep.state is not None for ep in all_eps) else 0
    train_eps = [all_eps[i] for i in train_ids]
    val_eps = [all_eps[i] for i in val_ids]
    if resume_from is not None:
        from dreamgen.embodiments import load_embodiment_folder

        emb = load_embodiment_folder(resume_from / "embodiment")  # the same normalisation as before
    else:
        if cfg.stats == "dataset" or emb.action_key not in emb.stats:
            emb = emb.with_stats({**emb.stats, emb.action_key: action_stats(train_eps)})
        if state_dim and (cfg.stats == "dataset" or emb.state_key not in emb.stats):
            emb = emb.with_stats({**emb.stats, emb.state_key: action_stats(train_eps, "state")})
    model_cfg = build_model_config(cfg, emb, action_dim, state_dim)
    if model_cfg.kind == "state" and not state_dim and emb.action_from_state:
        raise DreamgenError(f"{cfg.dataset_path}: a state IDM for {emb.name!r} (whose actions follow from its state) "
                            "needs observation.state in the training data")
    if resume_from is not None:
        saved = json.loads((resume_from / "config.json").read_text())
        saved["encoder_path"] = None
        model_cfg = IDMConfig.from_dict(saved)
    base = {"train_config": {k: v for k, v in asdict(cfg).items() if k not in ("episodes", "embodiment_obj")},
            "train_episodes": [all_eps[i].index for i in train_ids],
            "val_episodes": [all_eps[i].index for i in val_ids],
            "dataset_path": str(cfg.dataset_path) if cfg.dataset_path else None}
    val_set = make_training_set(model_cfg, val_eps, emb) if val_eps else None
    return emb, model_cfg, make_training_set(model_cfg, train_eps, emb), val_set, base


def _model_and_optimizer(run: _Run, resume_from: Path | None) -> None:
    """Model, AdamW (no decay on biases/norms), warm-up + cosine schedule; state from `resume_from` if given."""
    from dreamgen.idm.checkpoint import build_model

    cfg = run.cfg
    run.model = build_model(run.model_cfg)
    if not cfg.tune_encoder and run.model_cfg.kind == "flow":
        run.model.encoder.requires_grad_(False)
    run.model.to(run.device)
    run.params = [p for p in run.model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in run.params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in run.params if p.ndim < 2], "weight_decay": 0.0}]
    run.opt = torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(0.95, 0.999), eps=1e-8,
                                fused=run.device.type == "cuda")
    warmup = max(1, int(cfg.warmup_ratio * cfg.max_steps))
    run.sched = torch.optim.lr_scheduler.LambdaLR(run.opt, _lr_lambda(warmup, cfg.max_steps))
    if resume_from is not None:
        from safetensors.torch import load_file

        run.model.load_state_dict(load_file(str(resume_from / "model.safetensors")))
        state = safe_torch_load(resume_from / "training_state.pt")
        run.opt.load_state_dict(state["optimizer"])
        run.sched.load_state_dict(state["scheduler"])
        run.step = int(state["step"])
        run.history = json.loads((resume_from / "train_state.json").read_text()).get("history", [])
        if run.rank == 0:
            log.info("resumed from %s at step %d", resume_from, run.step)
    # DDP under torchrun / accelerate launch; the scheduler stays ours (one step per optimiser step)
    run.ddp_model, run.opt = run.accelerator.prepare(run.model, run.opt)


def _loader(run: _Run) -> tuple[Any, Any]:
    cfg, world = run.cfg, run.world
    sampler = (torch.utils.data.DistributedSampler(run.train_set, num_replicas=world, rank=run.rank, seed=cfg.seed)
               if world > 1 else None)
    loader = torch.utils.data.DataLoader(
        run.train_set, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
        drop_last=len(run.train_set) >= cfg.batch_size * world, num_workers=cfg.num_workers,
        persistent_workers=cfg.num_workers > 0, pin_memory=run.device.type == "cuda",
        generator=torch.Generator().manual_seed(cfg.seed + run.step))
    return sampler, loader


def _save(run: _Run, val: float | None) -> Path:
    """checkpoint-<step>/ (self-contained), keeping the newest `save_total_limit`."""
    path = run.out_dir / f"checkpoint-{run.step}"
    save_checkpoint(path, run.model, run.emb,
                    {**run.state_base, "step": run.step, "val_loss": val, "history": run.history},
                    {"optimizer": run.opt.state_dict(), "scheduler": run.sched.state_dict(), "step": run.step})
    kept = sorted((int(m.group(1)), p) for p in run.out_dir.iterdir() if (m := CHECKPOINT_RE.match(p.name)))
    for _, old in kept[:-run.cfg.save_total_limit] if run.cfg.save_total_limit > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    log.info("saved %s", path)
    return path


def _train_step(run: _Run, frames: torch.Tensor, targets: list[torch.Tensor], aug_gen: torch.Generator) -> torch.Tensor:
    """One optimiser step. flow batches: (frames, action chunks); state batches: (frames, targets, mask)."""
    frames = frames.to(run.device, non_blocking=True)
    if run.cfg.augment:  # on the device: cheap on a GPU even for 256x256 frames
        frames = augment_frames(frames, aug_gen, crop=run.model_cfg.kind == "flow")
    targets = [x.to(run.device, non_blocking=True) for x in targets]
    with run.autocast():
        loss = run.ddp_model(frames, *targets)
    run.opt.zero_grad(set_to_none=True)
    run.accelerator.backward(loss)
    if run.cfg.grad_clip:
        run.accelerator.clip_grad_norm_(run.params, run.cfg.grad_clip)
    run.opt.step()
    run.sched.step()
    run.step += 1
    return loss.detach()


def _validate(run: _Run) -> float:
    val = validation_loss(run.model, run.val_set, run.cfg.batch_size, run.device, run.autocast,
                          run.cfg.max_val_samples)
    run.history.append({"step": run.step, "val_loss": val})
    log.info("step %d: val loss %.4f", run.step, val)
    return val


def train_idm(cfg: IDMTrainConfig) -> Path:
    """Train an IDM; returns the final checkpoint folder."""
    accelerator = _accelerator(cfg)
    rank, world, device = accelerator.process_index, accelerator.num_processes, accelerator.device
    torch.manual_seed(cfg.seed + rank)
    out_dir = Path(cfg.output_dir)
    resume_from = latest_checkpoint(out_dir) if cfg.resume else None
    if not cfg.resume and out_dir.is_dir() and any(CHECKPOINT_RE.match(p.name) for p in out_dir.iterdir()):
        raise OutputExistsError(f"{out_dir}: already holds IDM checkpoints; pass --resume to continue that run "
                                "or choose another --output-dir")
    emb, model_cfg, train_set, val_set, base = _data(cfg, resume_from)
    run = _Run(cfg, accelerator, out_dir, emb, model_cfg, train_set, val_set, base)
    _model_and_optimizer(run, resume_from)
    sampler, loader = _loader(run)
    if rank == 0:
        log.info("IDM: %.2fM parameters, %d train windows (%d episodes), %d val episodes, device %s%s, world %d",
                 sum(p.numel() for p in run.model.parameters()) / 1e6, len(train_set),
                 len(base["train_episodes"]), len(base["val_episodes"]), device, " bf16" if run.use_bf16 else "", world)
    from tqdm import tqdm

    eval_steps = cfg.eval_steps or cfg.save_steps
    run.model.train()
    if rank == 0 and val_set is not None and run.step == 0:  # the starting point the curve is judged against
        _validate(run)
    pbar = tqdm(total=cfg.max_steps, initial=run.step, desc="idm-train", disable=rank != 0, dynamic_ncols=True)
    aug_gen = torch.Generator().manual_seed(cfg.seed * 7919 + rank + run.step)
    epoch, last_saved, t0, running = run.step // max(1, len(loader)), None, time.time(), []
    while run.step < cfg.max_steps:
        if sampler is not None:
            sampler.set_epoch(epoch)
        for frames, *targets in loader:
            loss = _train_step(run, frames, targets, aug_gen)
            running.append(loss)
            pbar.update(1)
            step, end = run.step, run.step == cfg.max_steps
            if step % cfg.log_steps == 0 or end:
                mean = float(torch.stack(running).mean())
                check_finite_loss(mean, step, "idm-train")
                running = []
                run.history.append({"step": step, "loss": mean, "lr": run.sched.get_last_lr()[0],
                                    "elapsed_s": round(time.time() - t0, 1)})
                pbar.set_postfix(loss=f"{mean:.4f}")
            val = _validate(run) if rank == 0 and val_set is not None and (step % eval_steps == 0 or end) else None
            if rank == 0 and (step % cfg.save_steps == 0 or end):
                check_finite_loss(float(loss) + (val or 0.0), step, "idm-train")  # nothing NaN is saved
                last_saved = _save(run, val)
            if end:
                break
        epoch += 1
    pbar.close()
    accelerator.wait_for_everyone()
    final = last_saved or latest_checkpoint(out_dir)
    if rank == 0 and final is None:
        final = _save(run, None)
    return final or out_dir / f"checkpoint-{run.step}"


def training_history(checkpoint: str | Path) -> list[dict[str, Any]]:
    from dreamgen.idm.checkpoint import find_checkpoint

    return json.loads((find_checkpoint(checkpoint) / "train_state.json").read_text()).get("history", [])
