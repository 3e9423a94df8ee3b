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
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dreamgen.embodiments import Embodiment, get_embodiment
from dreamgen.errors import DatasetError, DreamgenError, OutputExistsError, check_finite_loss
from dreamgen.policy.frame_cache import CachedDataset, should_cache
from dreamgen.policy.mixing import (
    BOOKKEEPING_KEYS,
    CachedMixedDataset,
    DatasetSpec,
    MixedDataset,
    MixtureMeta,
    WeightedMixSampler,
    check_mixture,
    mix_stats,
    passthrough_collate,
)
from dreamgen.policy.task_encoding import TASK_FEATURE_KEY, TaskEncoder, resolve_task_conditioning

log = logging.getLogger(__name__)

RUN_CONFIG = "dreamgen_train.json"
POLICY_INFO = "dreamgen_policy.json"


@dataclass
class PolicyTrainConfig:
    """Everything `finetune-policy` needs. The first dataset is the real one (its layout is the reference)."""

    datasets: list[DatasetSpec]
    output_dir: Path
    policy: str = "diffusion"
    embodiment: str | None = None  # name, file or folder; default: from the real dataset's meta/
    steps: int = 20_000
    batch_size: int = 32
    seed: int = 1000
    device: str | None = None  # None: cuda when available, else cpu
    num_workers: int = 4
    save_freq: int = 5_000
    log_freq: int = 100
    resume: bool = False
    video_keys: list[str] | None = None  # cameras the policy sees; default: the embodiment's present in all
    use_state: bool = True
    # A LeRobot `pretrained_model/` folder to start from, or for `groot` a GR00T N1.7 base model folder.
    pretrained: str | None = None
    lerobot_args: list[str] = field(default_factory=list)  # e.g. ["--policy.n_obs_steps=2"]
    mixed_precision: str = "no"  # accelerate: no | bf16 | fp16
    command: str | None = None  # the command line that made this run (recorded in checkpoints)
    # Instruction feature (observation.environment_state): "bow" | "none"; None = bow for diffusion/act,
    # none for the rest (VLAs such as groot read the text themselves). See task_encoding.py.
    task_conditioning: str | None = None
    task_dim: int = 128
    # Decode every video once and train from memory: auto (when the frames fit frame_cache_gb) | on | off.
    frame_cache: str = "auto"
    frame_cache_gb: float = 4.0
    # diffusion only: keep the ResNet image trunk up to layer N (1-3; None/4 = LeRobot's full trunk). See vision.py.
    vision_trunk_layers: int | None = None

    def __post_init__(self) -> None:
        self.output_dir = Path(self.output_dir)
        self.datasets = [d if isinstance(d, DatasetSpec) else DatasetSpec(Path(d)) for d in self.datasets]
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise DreamgenError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.task_conditioning not in (None, "auto", "bow", "none"):
            raise DreamgenError(f"task_conditioning must be bow or none, got {self.task_conditioning!r}")
        if self.frame_cache not in ("auto", "on", "off"):
            raise DreamgenError(f"frame_cache must be auto, on or off, got {self.frame_cache!r}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise DreamgenError(f"mixed_precision must be no, bf16 or fp16, got {self.mixed_precision!r}")
        for a in self.lerobot_args:
            if not a.startswith("--"):
                raise DreamgenError(f"LeRobot flags are passed as --name=value, got {a!r}")

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["datasets"] = [{"path": str(s.path.resolve()), "weight": s.weight} for s in self.datasets]
        d["output_dir"] = str(self.output_dir)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PolicyTrainConfig:
        d = dict(d)
        d["datasets"] = [DatasetSpec(Path(x["path"]), float(x["weight"])) for x in d["datasets"]]
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# ----------------------------------------------------------------------------------------------
# set-up helpers


def resolve_embodiment(spec: str | None, real: Path) -> Embodiment:
    """The embodiment named by `spec`, else the real dataset's own layout (meta/modality.json), else its
    robot type if that is a built-in, else a one-group layout read off the dataset's feature widths."""
    if spec:
        return get_embodiment(spec, dataset=real)
    meta = real / "meta"
    if (meta / "modality.json").is_file():
        return get_embodiment("new_embodiment", dataset=real)
    info = json.loads((meta / "info.json").read_text())
    rt = info.get("robot_type")
    if rt:
        try:
            return get_embodiment(rt)
        except DreamgenError:
            pass
    feats = info.get("features", {})
    cams = [k for k, f in feats.items() if f.get("dtype") in ("video", "image")]
    modality: dict[str, Any] = {"state": {}, "action": {}}
    if "observation.state" in feats:
        modality["state"]["state"] = {"start": 0, "end": int(feats["observation.state"]["shape"][0])}
    if "action" in feats:
        modality["action"]["action"] = {"start": 0, "end": int(feats["action"]["shape"][0])}
    if not cams:
        raise DatasetError(f"{real}: no camera feature; cannot derive an embodiment")
    log.warning("%s: no embodiment given or found; using a layout read off the dataset's features", real)
    return Embodiment(name=rt or real.name, robot_type=rt or real.name, fps=float(info.get("fps", 30)),
                      video_keys=cams, modality=modality, source=str(meta / "info.json"))


def build_train_config(cfg: PolicyTrainConfig, device: str) -> Any:
    """A LeRobot TrainPipelineConfig made from our flags + the pass-through LeRobot flags (they win)."""
    import draccus
    import lerobot.policies  # noqa: F401  (registers every policy type with draccus)
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.configs.train import TrainPipelineConfig

    known = PreTrainedConfig.get_known_choices()
    if cfg.policy not in known:
        raise DreamgenError(f"unknown policy type {cfg.policy!r}; LeRobot 0.6.1 has: {', '.join(sorted(known))}")
    args = [
        f"--policy.type={cfg.policy}",
        f"--dataset.repo_id=local/{cfg.datasets[0].path.name}",
        f"--dataset.root={cfg.datasets[0].path}",
        f"--output_dir={cfg.output_dir}",
        f"--steps={cfg.steps}",
        f"--batch_size={cfg.batch_size}",
        f"--seed={cfg.seed}",
        f"--num_workers={cfg.num_workers}",
        f"--save_freq={cfg.save_freq}",
        f"--log_freq={cfg.log_freq}",
        f"--policy.device={device}",
        "--policy.push_to_hub=false",
        "--wandb.enable=false",
    ]
    if cfg.policy == "groot" and cfg.pretrained:
        args.append(f"--policy.base_model_path={cfg.pretrained}")
    try:
        train_cfg = draccus.parse(TrainPipelineConfig, args=args + list(cfg.lerobot_args))
    except SystemExit as exc:  # draccus/argparse report the bad flag on stderr and exit
        raise DreamgenError(f"bad LeRobot flag among {cfg.lerobot_args}: see the message above") from exc
    except (ValueError, TypeError) as exc:
        raise DreamgenError(f"LeRobot config: {exc}") from exc
    if cfg.pretrained and cfg.policy != "groot":
        train_cfg.policy.pretrained_path = Path(cfg.pretrained)
    _offline_backbone(train_cfg.policy, cfg.lerobot_args)
    if cfg.policy == "groot" and cfg.pretrained:
        _match_groot_base(train_cfg.policy, Path(cfg.pretrained), cfg.lerobot_args)
    if train_cfg.use_policy_training_preset:
        train_cfg.optimizer = train_cfg.policy.get_optimizer_preset()
        train_cfg.scheduler = train_cfg.policy.get_scheduler_preset()
    return train_cfg


def _offline_backbone(policy_cfg: Any, passed: list[str]) -> None:
    """ACT/diffusion default to torchvision ImageNet weights, which need a download. Without a cached copy
    (and without the user asking for them) train the vision backbone from scratch instead."""
    name = getattr(policy_cfg, "pretrained_backbone_weights", None)
    if not name or any(a.startswith("--policy.pretrained_backbone_weights") for a in passed):
        return
    try:
        import torch
        import torchvision.models as tvm

        enum_name, member = name.split(".")
        url = getattr(getattr(tvm, enum_name), member).url
        cached = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    except Exception:  # unknown spelling: let LeRobot deal with it
        return
    if cached.is_file():
        return
    log.warning("torchvision weights %s are not cached (%s) and cannot be downloaded here: the vision backbone "
                "starts from random weights (pass --policy.pretrained_backbone_weights=... to insist)", name, cached)
    policy_cfg.pretrained_backbone_weights = None
    if hasattr(policy_cfg, "use_group_norm") and not any(a.startswith("--policy.use_group_norm") for a in passed):
        policy_cfg.use_group_norm = True  # LeRobot's recommendation for a backbone trained from scratch


def _match_groot_base(policy_cfg: Any, base: Path, passed: list[str]) -> None:
    """Take the padded widths and action horizon from the base model unless the user set them."""
    try:
        base_cfg = json.loads((base / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return  # check_groot_base reports it
    given = {a.split("=", 1)[0] for a in passed}
    for name in ("max_state_dim", "max_action_dim"):
        if f"--policy.{name}" not in given and name in base_cfg:
            setattr(policy_cfg, name, int(base_cfg[name]))
    horizon = base_cfg.get("action_horizon")
    if horizon and "--policy.chunk_size" not in given and int(horizon) < policy_cfg.chunk_size:
        policy_cfg.chunk_size = int(horizon)
        if "--policy.n_action_steps" not in given:
            policy_cfg.n_action_steps = min(policy_cfg.n_action_steps, int(horizon))


def _check_pretrained(cfg: PolicyTrainConfig) -> None:
    if not cfg.pretrained:
        if cfg.policy == "groot":
            raise DreamgenError(
                "groot needs a local GR00T N1.7 base model folder: pass --pretrained PATH (config.json, "
                "model.safetensors, processor files and a local Qwen3-VL backbone folder; the hub is not used)"
            )
        return
    from dreamgen.policy.checkpoint import check_policy_folder
    from dreamgen.policy.groot import check_groot_base

    if cfg.policy == "groot":
        check_groot_base(Path(cfg.pretrained))
    else:
        check_policy_folder(Path(cfg.pretrained))


def _latest_checkpoint(out: Path) -> Path:
    last = out / "checkpoints" / "last"
    if not last.exists():
        raise DreamgenError(f"{out}: nothing to resume (no checkpoints/last)")
    return last.resolve()


# ----------------------------------------------------------------------------------------------
# the training run


@dataclass
class TrainResult:
    checkpoint: Path  # the final checkpoint's pretrained_model/ folder
    losses: list[float]  # per step, this session only
    policy: Any  # the trained policy (unwrapped), with its processors
    preprocessor: Any
    postprocessor: Any


def finetune_policy(cfg: PolicyTrainConfig) -> TrainResult:
    """Train (or resume) a policy; the result names the final checkpoint's `pretrained_model/` folder."""
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

    task_encoder = resolve_task_conditioning(cfg.policy, cfg.task_conditioning, cfg.task_dim)
    real = cfg.datasets[0].path
    if not real.is_dir():
        raise DatasetError(f"{real}: dataset folder does not exist")
    embodiment = resolve_embodiment(cfg.embodiment, real)
    _infos, cams, has_state = check_mixture(cfg.datasets, embodiment, cfg.video_keys)
    use_state = has_state and cfg.use_state
    _check_pretrained(cfg)

    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs
    from lerobot.common.train_utils import load_training_state
    from lerobot.optim.factory import make_optimizer_and_scheduler
    from lerobot.policies.factory import make_policy, make_pre_post_processors
    from lerobot.utils.random_utils import set_seed

    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):  # TF32 convs/matmuls: ~free speed for these small fp32 models
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    accelerator = Accelerator(
        step_scheduler_with_optimizer=False,
        mixed_precision=cfg.mixed_precision,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        cpu=device == "cpu",
    )
    main = accelerator.is_main_process
    train_cfg = build_train_config(cfg, accelerator.device.type)
    set_seed(cfg.seed, accelerator=accelerator)
    ckpt = _latest_checkpoint(out) if cfg.resume else None

    # ---- data -----------------------------------------------------------------------------
    mix = open_mixture(cfg.datasets, cams, use_state, embodiment, train_cfg, task_encoder=task_encoder,
                       frame_cache=cfg.frame_cache, frame_cache_gb=cfg.frame_cache_gb, progress=main)
    cached = isinstance(mix, CachedMixedDataset)
    policy_cfg = train_cfg.policy
    if ckpt is not None:
        policy_cfg.pretrained_path = ckpt / "pretrained_model"

    # ---- policy + processors ------------------------------------------------------------------
    if cfg.vision_trunk_layers not in (None, 4):
        from dreamgen.policy.vision import build_truncated, truncate_vision_trunk

        policy_cfg.pretrained_path = None  # a cut trunk cannot load through LeRobot: load its weights below
        policy = make_policy(policy_cfg, ds_meta=mix.meta)
        truncate_vision_trunk(policy, cfg.vision_trunk_layers)
        if ckpt is not None:
            saved = build_truncated(type(policy), policy.config, ckpt / "pretrained_model", cfg.vision_trunk_layers)
            policy.load_state_dict(saved.state_dict())
    else:
        policy = make_policy(policy_cfg, ds_meta=mix.meta)
    if ckpt is not None:
        from dreamgen.policy.checkpoint import load_processors

        preprocessor, postprocessor = load_processors(policy_cfg, ckpt / "pretrained_model", accelerator.device.type)
    else:
        preprocessor, postprocessor = make_pre_post_processors(
            policy_cfg, dataset_stats=mix.meta.stats, dataset_meta=mix.meta
        )
    if cfg.policy == "groot":
        from dreamgen.policy.groot import localize_groot_processors

        localize_groot_processors(preprocessor, Path(policy_cfg.base_model_path))

    optimizer, scheduler = make_optimizer_and_scheduler(train_cfg, policy)
    step = 0
    if ckpt is not None:
        step, optimizer, scheduler = load_training_state(ckpt, optimizer, scheduler)
        if main:
            log.info("resuming %s at step %d", ckpt, step)

    drop_last_frames = int(getattr(policy_cfg, "drop_n_last_frames", 0) or 0)
    sampler = WeightedMixSampler.for_mixture(mix, drop_n_last_frames=drop_last_frames, seed=cfg.seed,
                                             min_samples=cfg.batch_size * accelerator.num_processes)
    if step:
        sampler.resume_at(step * cfg.batch_size * accelerator.num_processes)
    # From the frame cache a batch is a few tensor gathers: worker processes would only copy the cache.
    workers = 0 if cached else cfg.num_workers
    loader = torch.utils.data.DataLoader(
        mix, batch_size=cfg.batch_size, sampler=sampler, num_workers=workers, drop_last=True,
        pin_memory=accelerator.device.type == "cuda",
        persistent_workers=workers > 0, multiprocessing_context="spawn" if workers > 0 else None,
        prefetch_factor=2 if workers > 0 else None,
        **({"collate_fn": passthrough_collate} if cached else {}),
    )
    policy, optimizer, loader, scheduler = accelerator.prepare(policy, optimizer, loader, scheduler)

    if main:
        out.mkdir(parents=True, exist_ok=True)
        _atomic_write_json(out / RUN_CONFIG, cfg.to_json())
        n_params = sum(p.numel() for p in policy.parameters())
        n_train = sum(p.numel() for p in policy.parameters() if p.requires_grad)
        log.info("policy %s: %d params (%d trainable); mix %s; cameras %s; state %s; task feature %s; "
                 "frame cache %s", cfg.policy, n_params, n_train, [(str(s.path), s.weight) for s in cfg.datasets],
                 cams, use_state, task_encoder.to_json(), f"{mix.nbytes() / 2**20:.0f} MiB" if cached else "off")

    # ---- loop ---------------------------------------------------------------------------------
    from tqdm import tqdm

    grad_clip = train_cfg.optimizer.grad_clip_norm
    camera_keys = mix.meta.camera_keys
    # the instruction feature gets the time axis the policy's other observations have (diffusion: n_obs_steps)
    obs_delta = getattr(policy_cfg, "observation_delta_indices", None)
    task_steps = len(obs_delta) if obs_delta else None
    bar = tqdm(total=cfg.steps, initial=step, desc=f"finetune {cfg.policy}", unit="step", disable=not main)
    batches = _cycle(loader)
    losses: list[float] = []
    last_saved: Path | None = ckpt / "pretrained_model" if ckpt is not None else None
    t0 = time.perf_counter()
    while step < cfg.steps:
        batch = next(batches)
        for key in camera_keys:
            if key in batch and batch[key].dtype == torch.uint8:
                batch[key] = batch[key].float() / 255.0
        if task_encoder.enabled:
            batch[TASK_FEATURE_KEY] = task_encoder.tensor(batch["task"], steps=task_steps,
                                                          device=accelerator.device)
        batch = preprocessor(batch)
        policy.train()
        with accelerator.autocast():
            loss, _ = policy(batch)
        accelerator.backward(loss)
        if grad_clip and grad_clip > 0:
            accelerator.clip_grad_norm_(policy.parameters(), grad_clip)
        optimizer.step()
        optimizer.zero_grad()
        if scheduler is not None:
            scheduler.step()
        unwrapped = accelerator.unwrap_model(policy, keep_fp32_wrapper=True)
        if hasattr(unwrapped, "update"):
            unwrapped.update()
        step += 1
        losses.append(float(loss.detach()))
        check_finite_loss(losses[-1], step, "finetune-policy")  # never saved as a trained policy
        bar.update(1)
        if main and cfg.log_freq > 0 and step % cfg.log_freq == 0:
            window = losses[-cfg.log_freq:]
            rec = {"step": step, "loss": sum(window) / len(window), "lr": optimizer.param_groups[0]["lr"],
                   "s_per_step": (time.perf_counter() - t0) / len(window)}
            log.info("step %d loss %.4f lr %.2e (%.2f s/step)", *rec.values())
            with open(out / "train_log.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")
            t0 = time.perf_counter()
        if (cfg.save_freq > 0 and step % cfg.save_freq == 0) or step == cfg.steps:
            if main:
                last_saved = _save(out, step, cfg, train_cfg, accelerator.unwrap_model(policy), optimizer,
                                   scheduler, preprocessor, postprocessor, embodiment, mix, cams, use_state,
                                   accelerator.num_processes, losses, task_encoder)
            accelerator.wait_for_everyone()
    bar.close()
    accelerator.end_training()
    if last_saved is None:
        raise DreamgenError(f"{out}: nothing trained (already at step {step} of {cfg.steps})")
    policy = accelerator.unwrap_model(policy)
    policy.eval()
    return TrainResult(last_saved, losses, policy, preprocessor, postprocessor)


def _cycle(loader):
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:  # would spin forever
            raise DreamgenError("the training data loader yielded no batch in a whole pass (fewer samples than "
                                "one batch with drop_last); lower --batch-size or add data")


def open_mixture(specs: list[DatasetSpec], cams: list[str], use_state: bool, embodiment: Embodiment,
                 train_cfg: Any, task_encoder: TaskEncoder | None = None, frame_cache: str = "off",
                 frame_cache_gb: float = 4.0, progress: bool = False) -> MixedDataset:
    """Open every dataset with the policy's frame offsets; stats over the mix; features the policy uses.

    With an enabled `task_encoder` the policy also gets the instruction feature (a feature of the mix's
    metadata with identity statistics; computed from each sample's task text in the training loop).
    With the frame cache on (or auto and the decoded frames fit `frame_cache_gb`) every dataset is loaded
    into memory once and the result is a `CachedMixedDataset`."""
    from lerobot.datasets.dataset_metadata import LeRobotDatasetMetadata
    from lerobot.datasets.factory import resolve_delta_timestamps
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.utils.constants import IMAGENET_STATS

    keep = [*cams, embodiment.action_key] + ([embodiment.state_key] if use_state else [])
    metas = [LeRobotDatasetMetadata(f"local/{s.path.name}", root=s.path) for s in specs]
    real_meta = metas[0]
    features = {k: v for k, v in real_meta.features.items() if k in keep or k in BOOKKEEPING_KEYS}
    datasets = []
    for spec, meta in zip(specs, metas, strict=True):
        delta = resolve_delta_timestamps(train_cfg.policy, meta) or {}
        delta = {k: v for k, v in delta.items() if k in keep} or None
        try:
            datasets.append(LeRobotDataset(
                f"local/{spec.path.name}", root=spec.path, delta_timestamps=delta, return_uint8=True,
                video_backend=train_cfg.dataset.video_backend, tolerance_s=train_cfg.tolerance_s,
            ))
        except Exception as exc:  # a broken dataset must not look like a training bug
            raise DatasetError(f"{spec.path}: cannot open as a LeRobot v3 dataset ({exc})") from exc
    for spec, meta in zip(specs, metas, strict=True):
        missing = [k for k in keep if k not in (meta.stats or {})]
        if missing:
            raise DatasetError(f"{spec.path}: meta/stats.json lacks statistics for {missing}")
    w = np.asarray([s.weight for s in specs], dtype=np.float64)
    stats = mix_stats([m.stats for m in metas], w / w.sum(), keep)
    if train_cfg.dataset.use_imagenet_stats:
        for key in cams:
            for name, value in IMAGENET_STATS.items():
                stats[key][name] = np.asarray(value, dtype=np.float32)
    if task_encoder is not None and task_encoder.enabled:
        for spec, meta in zip(specs, metas, strict=True):
            if TASK_FEATURE_KEY in meta.features:
                raise DatasetError(f"{spec.path}: has its own {TASK_FEATURE_KEY!r} feature, which the instruction "
                                   "feature would replace; pass --task-conditioning none")
        features[TASK_FEATURE_KEY] = task_encoder.feature()
        stats[TASK_FEATURE_KEY] = task_encoder.stats()
    meta = MixtureMeta(real_meta, features, stats)
    if should_cache(frame_cache, metas, cams, frame_cache_gb):
        cached = [CachedDataset(ds, keep, progress=progress) for ds in datasets]
        return CachedMixedDataset(cached, specs, keep, meta)
    return MixedDataset(datasets, specs, keep, meta)


def _save(out: Path, step: int, cfg: PolicyTrainConfig, train_cfg: Any, policy: Any, optimizer: Any,
          scheduler: Any, preprocessor: Any, postprocessor: Any, embodiment: Embodiment, mix: MixedDataset,
          cams: list[str], use_state: bool, num_processes: int, losses: list[float],
          task_encoder: TaskEncoder | None = None) -> Path:
    """Write checkpoints/<step>/ atomically (temp folder, then rename) and point `last` at it."""
    from lerobot.common.train_utils import get_step_checkpoint_dir, save_checkpoint, update_last_checkpoint

    final = get_step_checkpoint_dir(out, cfg.steps, step)
    tmp = final.with_name(f".tmp-{final.name}")
    if tmp.exists():
        shutil.rmtree(tmp)
    save_checkpoint(tmp, step, train_cfg, policy, optimizer, scheduler, preprocessor, postprocessor,
                    num_processes=num_processes, batch_size=cfg.batch_size)
    pm = tmp / "pretrained_model"
    emb_stats = {k: {n: np.asarray(v).reshape(-1).tolist() for n, v in st.items() if n != "count"}
                 for k, st in mix.meta.stats.items() if k in (embodiment.action_key, embodiment.state_key)}
    embodiment.with_stats({**embodiment.stats, **emb_stats}).save(pm / "embodiment")
    window = losses[-max(1, cfg.log_freq):]
    info = {
        "policy": cfg.policy,
        "step": step,
        "datasets": [{"path": str(s.path.resolve()), "weight": s.weight} for s in cfg.datasets],
        "embodiment": embodiment.name,
        "video_keys": cams,
        "image_keys_in_dataset": cams,
        "use_state": use_state,
        "state_key": embodiment.state_key,
        "action_key": embodiment.action_key,
        "fps": embodiment.fps,
        "loss": sum(window) / len(window),
        "task_conditioning": (task_encoder or TaskEncoder("none")).to_json(),
        "vision_trunk_layers": cfg.vision_trunk_layers,
        "command": cfg.command or " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]),
    }
    _atomic_write_json(pm / POLICY_INFO, info)
    if final.exists():  # a re-run of the same step after a crash between rename and `last`
        shutil.rmtree(final)
    tmp.rename(final)
    update_last_checkpoint(final)
    log.info("saved %s (loss %.4f)", final, info["loss"])
    return final / "pretrained_model"


def _atomic_write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default))
    tmp.replace(path)


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, np.ndarray | np.generic):
        return o.tolist()
    raise TypeError(type(o))
