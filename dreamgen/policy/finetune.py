"""`finetune_policy`: train a LeRobot policy (GR00T, diffusion, ACT, ...) on real + neural trajectories.

The policy, its processors, optimizer presets and checkpoint format are LeRobot 0.6.1's own; what is
ours is the data side (several datasets mixed with sampling weights, checked against one embodiment,
normalisation statistics over the mix) and a training loop you can read in one sitting. Any LeRobot
training flag (`--policy.n_obs_steps=2`, `--optimizer.lr=3e-4`, `--policy.crop_shape=[60,60]`, ...)
passes through untouched. `accelerate launch -m dreamgen.cli finetune-policy ...` (or torchrun) trains
on several GPUs the way `lerobot-train` does.

Run folder layout (LeRobot's):

    OUT/dreamgen_train.json                  how to resume this run (datasets, weights, flags)
    OUT/checkpoints/<step>/pretrained_model/ config.json, model.safetensors, processors, train_config.json,
                                             embodiment/ and dreamgen_policy.json (datasets, stats, command)
    OUT/checkpoints/<step>/training_state/   optimizer, scheduler, rng, step
    OUT/checkpoints/last -> <step>
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dreamgen.embodiments import Embodiment
from dreamgen.errors import DatasetError, DreamgenError, OutputExistsError, check_finite_loss
from dreamgen.policy.config import PolicyTrainConfig
from dreamgen.policy.families import policy_family
from dreamgen.policy.mixing import (
    CachedMixedDataset,
    MixedDataset,
    WeightedMixSampler,
    check_mixture,
    passthrough_collate,
)
from dreamgen.policy.task_encoding import TaskEncoder, resolve_task_conditioning
from dreamgen.policy.train_data import cycle_batches, open_mixture
from dreamgen.policy.train_save import POLICY_INFO, save_run_checkpoint, write_json
from dreamgen.policy.train_setup import (
    build_train_config,
    check_pretrained,
    latest_checkpoint,
    resolve_embodiment,
)
from dreamgen.policy.vision import VisionSpec, grounded_names

log = logging.getLogger(__name__)

RUN_CONFIG = "dreamgen_train.json"
__all__ = ["POLICY_INFO", "RUN_CONFIG", "PolicyTrainConfig", "TrainResult", "finetune_policy"]


# ----------------------------------------------------------------------------------------------
# the training run: settings, set-up, one step, the loop


@dataclass
class TrainResult:
    checkpoint: Path  # the final checkpoint's pretrained_model/ folder
    losses: list[float]  # per step, this session only
    policy: Any  # the trained policy (unwrapped), with its processors
    preprocessor: Any
    postprocessor: Any


@dataclass
class _Run:
    """What the loop needs, made once by `_setup`."""

    cfg: PolicyTrainConfig
    out: Path
    accelerator: Any
    train_cfg: Any
    embodiment: Embodiment
    mix: MixedDataset
    cams: list[str]
    use_state: bool
    task_encoder: TaskEncoder
    policy: Any
    preprocessor: Any
    postprocessor: Any
    optimizer: Any
    scheduler: Any
    loader: Any
    step: int
    last_saved: Path | None


def finetune_policy(cfg: PolicyTrainConfig) -> TrainResult:
    """Train (or resume) a policy; the result names the final checkpoint's `pretrained_model/` folder."""
    out = cfg.output_dir  # on --resume the recorded settings name the folder the run was started in
    cfg = _run_settings(cfg)
    run = _setup(cfg, out)
    losses = _train(run)
    run.accelerator.end_training()
    if run.last_saved is None:
        raise DreamgenError(f"{out}: nothing trained (already at step {run.step} of {cfg.steps})")
    policy = run.accelerator.unwrap_model(run.policy)
    policy.eval()
    return TrainResult(run.last_saved, losses, policy, run.preprocessor, run.postprocessor)


def _run_settings(cfg: PolicyTrainConfig) -> PolicyTrainConfig:
    """On --resume the run's own recorded settings (steps/workers/logging may change); else refuse a
    non-empty output folder."""
    out = cfg.output_dir
    if cfg.resume:
        saved = out / RUN_CONFIG
        if not saved.is_file():
            raise DreamgenError(f"{out}: cannot resume, no {RUN_CONFIG} (was it made by finetune-policy?)")
        saved_cfg = json.loads(saved.read_text())
        saved_cfg.setdefault("task_conditioning", "none")  # runs from before the instruction feature
        prev = PolicyTrainConfig.from_json(saved_cfg)
        given = [(s.path.resolve(), s.weight) for s in cfg.datasets]
        if given and given != [(s.path.resolve(), s.weight) for s in prev.datasets]:
            raise DreamgenError(f"{out}: --resume with datasets/weights different from the run's ({saved})")
        # resume keeps the run's data and model settings; steps/workers/logging may change
        cfg = dataclasses.replace(prev, resume=True, steps=cfg.steps, num_workers=cfg.num_workers,
                                  log_freq=cfg.log_freq, save_freq=cfg.save_freq, device=cfg.device or prev.device)
    elif out.exists() and any(out.iterdir()):
        raise OutputExistsError(f"{out}: output folder exists and is not empty (pass --resume to continue that run)")
    return cfg


def _make_accelerator(cfg: PolicyTrainConfig) -> Any:
    import torch
    from accelerate.utils import DistributedDataParallelKwargs

    from dreamgen.accelerate_utils import make_accelerator

    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):  # TF32 convs/matmuls: ~free speed for these small fp32 models
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    return make_accelerator(
        step_scheduler_with_optimizer=False,
        mixed_precision=cfg.mixed_precision,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        cpu=device == "cpu",
    )


def _setup(cfg: PolicyTrainConfig, out: Path) -> _Run:
    """Check the data and starting weights, then build policy, processors, optimizer and loader."""
    task_encoder = resolve_task_conditioning(cfg.policy, cfg.task_conditioning, cfg.task_dim)
    real = cfg.datasets[0].path
    if not real.is_dir():
        raise DatasetError(f"{real}: dataset folder does not exist")
    embodiment = resolve_embodiment(cfg.embodiment, real)
    _infos, cams, has_state = check_mixture(cfg.datasets, embodiment, cfg.video_keys, use_state=cfg.use_state)
    use_state = has_state and cfg.use_state
    check_pretrained(cfg)

    from lerobot.common.train_utils import load_training_state
    from lerobot.optim.factory import make_optimizer_and_scheduler
    from lerobot.utils.random_utils import set_seed

    accelerator = _make_accelerator(cfg)
    main = accelerator.is_main_process
    train_cfg = build_train_config(cfg, accelerator.device.type)
    set_seed(cfg.seed, accelerator=accelerator)
    ckpt = latest_checkpoint(out) if cfg.resume else None
    mix = open_mixture(cfg.datasets, cams, use_state, embodiment, train_cfg, task_encoder=task_encoder,
                       frame_cache=cfg.frame_cache, frame_cache_gb=cfg.frame_cache_gb, progress=main)
    policy, preprocessor, postprocessor = _make_policy(cfg, train_cfg, mix, ckpt, accelerator.device.type,
                                                       task_encoder)
    optimizer, scheduler = make_optimizer_and_scheduler(train_cfg, policy)
    step = 0
    if ckpt is not None:
        step, optimizer, scheduler = load_training_state(ckpt, optimizer, scheduler)
        if main:
            log.info("resuming %s at step %d", ckpt, step)
    loader = _make_loader(cfg, mix, train_cfg, accelerator, step)
    policy, optimizer, loader, scheduler = accelerator.prepare(policy, optimizer, loader, scheduler)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / RUN_CONFIG, cfg.to_json())
        n_params = sum(p.numel() for p in policy.parameters())
        n_train = sum(p.numel() for p in policy.parameters() if p.requires_grad)
        cached = isinstance(mix, CachedMixedDataset)
        log.info("policy %s: %d params (%d trainable); mix %s; cameras %s; state %s; task feature %s; "
                 "frame cache %s", cfg.policy, n_params, n_train, [(str(s.path), s.weight) for s in cfg.datasets],
                 cams, use_state, task_encoder.to_json(), f"{mix.nbytes() / 2**20:.0f} MiB" if cached else "off")
    last_saved = ckpt / "pretrained_model" if ckpt is not None else None
    return _Run(cfg, out, accelerator, train_cfg, embodiment, mix, cams, use_state, task_encoder, policy,
                preprocessor, postprocessor, optimizer, scheduler, loader, step, last_saved)


def _make_policy(cfg: PolicyTrainConfig, train_cfg: Any, mix: MixedDataset, ckpt: Path | None,
                 device_type: str, task_encoder: TaskEncoder) -> tuple[Any, Any, Any]:
    """The policy and its processors: fresh (statistics of the mix) or those of the checkpoint resumed.
    The preprocessor computes the instruction feature from the batch's `task` (task_step.py)."""
    from lerobot.policies.factory import make_policy, make_pre_post_processors

    policy_cfg = train_cfg.policy
    if ckpt is not None:
        policy_cfg.pretrained_path = ckpt / "pretrained_model"
    vision = VisionSpec(cfg.vision_trunk_layers, cfg.vision_instruction_film, cfg.vision_attended_keypoints,
                        grounded_names(cfg))
    if not vision.is_stock or cfg.vision_pretrained_trunk:
        from dreamgen.policy.vision import adapt_image_encoder, load_adapted_weights, load_pretrained_trunk

        # the checkpoint resumed or `--pretrained` (family.configure): an adapted encoder cannot load through
        # LeRobot, so the whole adapted policy's weights are loaded below
        start, policy_cfg.pretrained_path = policy_cfg.pretrained_path, None
        policy = make_policy(policy_cfg, ds_meta=mix.meta)
        adapt_image_encoder(policy, vision)
        if start is not None:
            load_adapted_weights(policy, Path(start), vision)
            log.info("weights from %s", start)
        elif cfg.vision_pretrained_trunk:
            log.info("image trunk from %s", load_pretrained_trunk(policy, cfg.vision_pretrained_trunk))
        if cfg.vision_freeze_trunk:
            from dreamgen.policy.vision import freeze_trunk

            log.info("image trunk frozen (%d parameters)", freeze_trunk(policy))
    else:
        policy = make_policy(policy_cfg, ds_meta=mix.meta)
    if ckpt is not None:
        from dreamgen.policy.checkpoint import load_processors

        preprocessor, postprocessor = load_processors(policy_cfg, ckpt / "pretrained_model", device_type)
    else:
        preprocessor, postprocessor = make_pre_post_processors(
            policy_cfg, dataset_stats=mix.meta.stats, dataset_meta=mix.meta
        )
    policy_family(cfg.policy).prepare_processors(preprocessor, policy_cfg, task_encoder)
    return policy, preprocessor, postprocessor


def _make_loader(cfg: PolicyTrainConfig, mix: MixedDataset, train_cfg: Any, accelerator: Any, step: int) -> Any:
    import torch

    cached = isinstance(mix, CachedMixedDataset)
    drop_last_frames = int(getattr(train_cfg.policy, "drop_n_last_frames", 0) or 0)
    sampler = WeightedMixSampler.for_mixture(mix, drop_n_last_frames=drop_last_frames, seed=cfg.seed,
                                             min_samples=cfg.batch_size * accelerator.num_processes)
    if step:
        sampler.resume_at(step * cfg.batch_size * accelerator.num_processes)
    # From the frame cache a batch is a few tensor gathers: worker processes would only copy the cache.
    workers = 0 if cached else cfg.num_workers
    return torch.utils.data.DataLoader(
        mix, batch_size=cfg.batch_size, sampler=sampler, num_workers=workers, drop_last=True,
        pin_memory=accelerator.device.type == "cuda",
        persistent_workers=workers > 0, multiprocessing_context="spawn" if workers > 0 else None,
        prefetch_factor=2 if workers > 0 else None,
        **({"collate_fn": passthrough_collate} if cached else {}),
    )


def train_step(run: _Run, batch: dict[str, Any]) -> float:
    """One optimizer step on one batch; returns the loss. The preprocessor adds the instruction feature."""
    import torch

    acc = run.accelerator
    for key in run.mix.meta.camera_keys:
        if key in batch and batch[key].dtype == torch.uint8:  # to the device as uint8: 1/4 of the copy
            batch[key] = batch[key].to(acc.device, non_blocking=True).float() / 255.0
    batch = run.preprocessor(batch)
    run.policy.train()
    with acc.autocast():
        loss, _ = run.policy(batch)
    acc.backward(loss)
    grad_clip = run.train_cfg.optimizer.grad_clip_norm
    if grad_clip and grad_clip > 0:
        acc.clip_grad_norm_(run.policy.parameters(), grad_clip)
    run.optimizer.step()
    run.optimizer.zero_grad()
    if run.scheduler is not None:
        run.scheduler.step()
    unwrapped = acc.unwrap_model(run.policy, keep_fp32_wrapper=True)
    if hasattr(unwrapped, "update"):
        unwrapped.update()
    return float(loss.detach())


def _train(run: _Run) -> list[float]:
    """The loop: steps until cfg.steps, logging every log_freq and saving every save_freq and at the end."""
    from tqdm import tqdm

    cfg, acc, out = run.cfg, run.accelerator, run.out
    main = acc.is_main_process
    bar = tqdm(total=cfg.steps, initial=run.step, desc=f"finetune {cfg.policy}", unit="step", disable=not main)
    batches = cycle_batches(run.loader)
    losses: list[float] = []
    t0 = time.perf_counter()
    while run.step < cfg.steps:
        losses.append(train_step(run, next(batches)))
        check_finite_loss(losses[-1], run.step + 1, "finetune-policy")  # never saved as a trained policy
        run.step += 1
        bar.update(1)
        if main and cfg.log_freq > 0 and run.step % cfg.log_freq == 0:
            window = losses[-cfg.log_freq:]
            rec = {"step": run.step, "loss": sum(window) / len(window),
                   "lr": run.optimizer.param_groups[0]["lr"], "s_per_step": (time.perf_counter() - t0) / len(window)}
            log.info("step %d loss %.4f lr %.2e (%.2f s/step)", *rec.values())
            with open(out / "train_log.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")
            t0 = time.perf_counter()
        if (cfg.save_freq > 0 and run.step % cfg.save_freq == 0) or run.step == cfg.steps:
            if main:
                run.last_saved = save_run_checkpoint(
                    out, run.step, cfg, run.train_cfg, acc.unwrap_model(run.policy), run.optimizer, run.scheduler,
                    run.preprocessor, run.postprocessor, run.embodiment, run.mix, run.cams, run.use_state,
                    acc.num_processes, losses, run.task_encoder)
            acc.wait_for_everyone()
    bar.close()
    return losses
