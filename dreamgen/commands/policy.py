"""`dreamgen finetune-policy | eval-policy` (the policy stage)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import typer

from dreamgen.commands.checks import PRECISIONS, at_least, precision_choice, precision_help
from dreamgen.errors import DreamgenError, check_number


def load_preset(spec: str) -> dict[str, Any]:
    """A YAML preset: a file path, or a name under dreamgen/configs/policy/ (e.g. `toyworld_diffusion`)."""
    from dreamgen.presets import load_preset as load

    return load("policy", spec, "finetune-policy settings")


# (setting, smallest value): presets and flags alike are checked before any work
_POLICY_MINIMA = {"steps": 1, "batch_size": 1, "num_workers": 0, "save_freq": 1, "log_freq": 1, "task_dim": 1}
_FLAG_OF = {"save_freq": "--save-every"}  # settings whose flag is spelled otherwise (the CLI's shared vocabulary)


def _check_numbers(settings: dict[str, Any]) -> None:
    for key, lo in _POLICY_MINIMA.items():
        check_number(_FLAG_OF.get(key, f"--{key.replace('_', '-')}"), settings.get(key), lo)
    check_number("--frame-cache-gb", settings.get("frame_cache_gb"), 0, lo_open=True)


def _check_datasets(specs: list, out: Path) -> None:
    """Each dataset opens locally, has episodes and finite numbers; the run folder is not inside one."""
    from dreamgen.data import open_dataset, require_episodes
    from dreamgen.io import check_output_location

    for spec in specs:
        require_episodes(open_dataset(spec.path), "--dataset")
        check_output_location(out, "--out", {"--dataset": spec.path})


def finetune_cmd(
    ctx: typer.Context,
    policy: str = typer.Option(None, "--policy", "-p", help="LeRobot policy type: groot, diffusion, act, pi0, ..."),
    dataset: list[str] = typer.Option(
        None, "--dataset", "-d",
        help="LeRobot v3 dataset folder, optionally PATH:WEIGHT (sampling weight, default 1). Repeat to mix; "
             "the first is the real dataset whose layout the others must match."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (checkpoints/<step>/pretrained_model/)."),
    config: str = typer.Option(None, "--config", "-c", help="YAML preset (file or name in dreamgen/configs/policy/)."),
    embodiment: str = typer.Option(None, "--embodiment", "-e", help="Embodiment name/file/folder "
                                   "(default: the real dataset's meta/modality.json)."),
    steps: int = typer.Option(None, "--steps", help="Optimizer steps (default 20000)."),
    batch_size: int = typer.Option(None, "--batch-size", help="Per-process batch size (default 32)."),
    device: str = typer.Option(None, "--device", help="cuda | cpu (default: cuda when available)."),
    num_workers: int = typer.Option(None, "--num-workers", help="DataLoader workers (default 4)."),
    save_every: int = typer.Option(None, "--save-every", "--save-freq", help="Checkpoint every N steps (and at "
                                   "the end)."),
    log_freq: int = typer.Option(None, "--log-freq", help="Log the loss every N steps."),
    seed: int = typer.Option(None, "--seed", help="Seed for init and data order (default 1000)."),
    video_key: list[str] = typer.Option(None, "--video-key", help="Camera(s) the policy sees (repeatable)."),
    no_state: bool = typer.Option(False, "--no-state", help="Do not feed observation.state to the policy."),
    pretrained: str = typer.Option(None, "--pretrained", help="LeRobot pretrained_model/ folder to start from; "
                                   "for groot: the local GR00T N1.7 base model folder."),
    precision: str = typer.Option(None, "--precision", "--mixed-precision",
                                  help=precision_help(*PRECISIONS, auto="the preset's, else fp32"),
                                  callback=precision_choice(*PRECISIONS)),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from checkpoints/last."),
    task_conditioning: str = typer.Option(
        None, "--task-conditioning",
        help="Instruction feature fed as observation.environment_state: bow (hashed bag of words) | none. "
             "Default: bow for diffusion/act, none for groot and other VLAs (they read the text)."),
    task_dim: int = typer.Option(None, "--task-dim", help="Width of the bow instruction feature (default 128)."),
    frame_cache: str = typer.Option(
        None, "--frame-cache", help="Decode all video once and train from memory: auto (default: when the "
                                    "frames fit --frame-cache-gb) | on | off."),
    frame_cache_gb: float = typer.Option(None, "--frame-cache-gb", help="Memory budget of the frame cache "
                                                                          "(default 4)."),
) -> None:
    """Train a LeRobot policy on real + neural trajectories mixed with sampling weights.

    Unknown flags are LeRobot training flags and pass through, e.g. --policy.n_obs_steps=2
    --policy.crop_shape=[60,60] --optimizer.lr=3e-4. Multi-GPU: accelerate launch -m dreamgen.cli
    finetune-policy ... (or torchrun).
    """
    from dreamgen.policy.finetune import PolicyTrainConfig, finetune_policy
    from dreamgen.policy.mixing import parse_dataset_spec

    settings: dict[str, Any] = load_preset(config) if config else {}
    preset_args = list(settings.pop("lerobot_args", []) or [])
    extra = list(ctx.args)
    bad = [a for a in extra if not a.startswith("--")]
    if bad:
        raise DreamgenError(f"unexpected argument(s) {bad}; LeRobot flags look like --policy.n_obs_steps=2")
    cli = {
        "policy": policy, "embodiment": embodiment, "steps": steps, "batch_size": batch_size, "device": device,
        "num_workers": num_workers, "save_freq": save_every, "log_freq": log_freq, "seed": seed,
        "video_keys": list(video_key) if video_key else None, "pretrained": pretrained,
        "mixed_precision": {"auto": None, "fp32": "no"}.get(precision, precision), "task_conditioning": task_conditioning, "task_dim": task_dim,
        "frame_cache": frame_cache, "frame_cache_gb": frame_cache_gb,
    }
    settings.update({k: v for k, v in cli.items() if v is not None})
    _check_numbers(settings)
    if no_state:
        settings["use_state"] = False
    specs = [parse_dataset_spec(d) for d in (dataset or settings.pop("datasets", None) or [])]
    settings.pop("datasets", None)
    if not specs and not resume:
        raise DreamgenError("pass at least one --dataset PATH[:WEIGHT] (the first is the real dataset)")
    known = set(PolicyTrainConfig.__dataclass_fields__) - {"datasets", "output_dir", "resume", "lerobot_args",
                                                           "command"}
    unknown = set(settings) - known
    if unknown:
        raise DreamgenError(f"{config}: unknown setting(s) {sorted(unknown)}; known: {sorted(known)}")
    _check_datasets(specs, out)
    cfg = PolicyTrainConfig(
        datasets=specs, output_dir=out, resume=resume, lerobot_args=preset_args + extra,
        command=shlex.join(["dreamgen", *sys.argv[1:]]), **settings,
    )
    result = finetune_policy(cfg)
    typer.echo(f"checkpoint: {result.checkpoint}")


def eval_cmd(
    checkpoint: Path = typer.Argument(..., help="Run folder, checkpoints/<step> or pretrained_model/ folder."),
    out: Path = typer.Option(None, "--out", "-o", help="Folder for results and rollout videos."),
    behavior: list[str] = typer.Option(None, "--behavior", "-b", help="ToyWorld behavior(s) (default: all)."),
    env: list[str] = typer.Option(None, "--env", help="ToyWorld environment(s) (default: all)."),
    episodes: int = typer.Option(None, "--episodes", "-n", help="Episodes per behavior x environment.",
                                 callback=at_least(1)),
    seed: int = typer.Option(None, "--seed", help="Episode seed base (default 1000: layouts unlike the demos', "
                                                  "which `toyworld collect` records from seed 0)."),
    device: str = typer.Option(None, "--device", help="cuda | cpu (default: cuda when available)."),
    videos: int = typer.Option(None, "--videos", help="Rollout videos to save per cell.", callback=at_least(0)),
) -> None:
    """Closed-loop success of a LeRobot checkpoint in ToyWorld, per behavior/environment with 95% CIs."""
    from dreamgen.policy.eval import eval_policy

    result = eval_policy(checkpoint, out_dir=out, device=device, behaviors=list(behavior) if behavior else None,
                         envs=list(env) if env else None, episodes=episodes, seed=seed, save_videos=videos)
    typer.echo(json.dumps(result, indent=2, default=str))


def register(app: typer.Typer) -> None:
    app.command(
        "finetune-policy",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(finetune_cmd)
    app.command("eval-policy")(eval_cmd)
