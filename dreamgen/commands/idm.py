"""`dreamgen convert | preprocess | idm-train | idm-extract | idm-eval` (the IDM stage)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from dreamgen.commands.checks import (
    at_least,
    in_range,
    parse_shard,
    parse_size,
    precision_choice,
    precision_help,
)
from dreamgen.errors import DreamgenError


def _parse_size(text: str | None, what: str) -> tuple[int, int] | None:
    size = parse_size(text, what, "256x256")
    return None if size is None else (size[0], size[1])


def _train_job(dataset_path: Path, output_dir: Path, resume: bool, overwrite: bool, **settings) -> None:
    """The resume rule for idm-train: --resume continues only a run made from the same data and model."""
    import shutil

    from dreamgen.idm.checkpoint import CHECKPOINT_RE, latest_checkpoint
    from dreamgen.jobs import check_job, read_job

    ckpts = [p for p in output_dir.iterdir() if CHECKPOINT_RE.match(p.name)] if output_dir.is_dir() else []
    settings = {"dataset_path": str(dataset_path.resolve()), **settings}
    if resume and ckpts and read_job(output_dir) is None:  # a run from before job records: its checkpoint says
        old = _settings_of_checkpoint(latest_checkpoint(output_dir), settings)
        if old is not None:
            check_job(output_dir, "idm-train", old, overwrite=True)
    if resume and not overwrite:
        check_job(output_dir, "idm-train", settings, has_results=bool(ckpts))
    elif overwrite or not ckpts:  # with checkpoints and neither flag, train_idm refuses the folder
        check_job(output_dir, "idm-train", settings, overwrite=True,
                  clear=lambda: [shutil.rmtree(p) for p in ckpts])


def _settings_of_checkpoint(ckpt: Path | None, keys: dict) -> dict | None:
    """The job settings an older run (without a job record) wrote into its checkpoint's train_state.json."""
    try:
        cfg = json.loads((ckpt / "train_state.json").read_text()).get("train_config") or {}
    except (TypeError, OSError, json.JSONDecodeError, AttributeError):
        return None
    if not cfg.get("dataset_path"):
        return None
    old = {k: cfg.get(k) for k in keys}
    old["dataset_path"] = str(Path(cfg["dataset_path"]).resolve())
    return old


def convert_cmd(
    input_dir: Path = typer.Argument(..., help="generate's output: <i>_<Instruction>.mp4 (+ .json sidecars)."),
    output_dir: Path = typer.Argument(..., help="New folder for <Instruction>/<k>.mp4 (must not exist)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan, copy nothing."),
) -> None:
    """Reorganise dreamed videos by instruction for idm-extract (never overwrites)."""
    from dreamgen.idm.convert import convert_dreams
    from dreamgen.io import check_output_location

    check_output_location(output_dir, "OUTPUT_DIR", {"INPUT_DIR": input_dir})
    plan = convert_dreams(input_dir, output_dir, dry_run=dry_run)
    for item in plan:
        side = " (+ sidecar)" if item.sidecar else ""
        typer.echo(f"{item.src} -> {output_dir / item.dst}{side}")
    typer.echo(f"{'would convert' if dry_run else 'converted'} {len(plan)} videos into "
               f"{len({i.dst.parent for i in plan})} instruction folders")


def preprocess_cmd(
    src: Path = typer.Argument(..., help="Folder of videos (e.g. convert's output)."),
    dst: Path = typer.Argument(..., help="New output folder (must not exist)."),
    embodiment: str = typer.Option(None, "--embodiment", "-e", help="Embodiment (required; sets the crop, size "
                                   "and fps): a built-in name or an embodiment file/folder."),
    crop: str = typer.Option(None, "--crop", help="pad | crop | stretch | gr1 | quad-tl (default per embodiment)."),
    size: str = typer.Option(None, "--size", help="HxW output size (default: the embodiment's IDM image size)."),
    original_size: str = typer.Option(None, "--original-size", help="Camera WxH whose aspect to restore."),
    fps: float = typer.Option(None, "--fps", help="Target fps (default the embodiment's; 0 keeps the source's).",
                              callback=in_range(0, 1000)),
    max_frames: int = typer.Option(None, "--max-frames", help="Split longer videos into parts of this length.",
                                   callback=at_least(2)),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the videos, write nothing."),
) -> None:
    """Bring videos to an embodiment's IDM resolution/fps (crop, pad, resize, resample, split)."""
    from dreamgen.idm.preprocess import PreprocessConfig, preprocess_videos
    from dreamgen.io import check_output_location

    check_output_location(dst, "DST", {"SRC": src})
    res = preprocess_videos(PreprocessConfig(
        src, dst, embodiment, crop=crop, size=_parse_size(size, "--size"),
        original_size=_parse_size(original_size, "--original-size"), fps=fps, max_frames=max_frames,
        dry_run=dry_run))
    typer.echo(f"{'would write' if dry_run else 'wrote'} {len(res['written'])} video(s) to {dst}")
    for f in res["failed"]:
        typer.echo(f"FAILED {f}", err=True)


def train_cmd(
    dataset_path: Path = typer.Option(..., "--dataset-path", "--dataset", help="Training dataset (LeRobot)."),
    out: Path = typer.Option(Path("runs/idm"), "--out", "-o", "--output-dir", help="Run folder for checkpoints."),
    embodiment: str = typer.Option("new_embodiment", "--embodiment", "-e",
                                   help="Embodiment name/file; new_embodiment reads the dataset's meta/."),
    model_config: str = typer.Option(None, "--model-config", help="configs/idm preset name or YAML file."),
    data_config: str = typer.Option(None, "--data-config", help="Reference data-config name or YAML overrides."),
    batch_size: int = typer.Option(16, "--batch-size", callback=at_least(1)),
    steps: int = typer.Option(10000, "--steps", "--max-steps", help="Optimizer steps.", callback=at_least(1)),
    save_every: int = typer.Option(500, "--save-every", "--save-steps", help="Checkpoint every N steps.",
                                   callback=at_least(1)),
    learning_rate: float = typer.Option(1e-4, "--learning-rate", "--lr", callback=in_range(0, 1, lo_open=True)),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Share of episodes held out.",
                                      callback=in_range(0, 1, hi_open=True)),
    num_workers: int = typer.Option(0, "--num-workers", "--dataloader-num-workers", callback=at_least(0)),
    device: str = typer.Option("auto", "--device"),
    precision: str = typer.Option("auto", "--precision", help=precision_help("auto", "bf16", "fp32"),
                                  callback=precision_choice("auto", "bf16", "fp32")),
    augment: bool = typer.Option(True, "--augment/--no-augment"),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in --out "
                                "(only a run made from the same dataset, embodiment and configs)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete the checkpoints in --out and start fresh."),
    seed: int = typer.Option(42, "--seed"),
) -> None:
    """Train an inverse dynamics model. Multi-GPU: torchrun scripts/idm_training.py (the reference's flags)."""
    from dreamgen.data import open_dataset, require_episodes
    from dreamgen.idm.train import IDMTrainConfig, train_idm
    from dreamgen.io import check_output_location

    check_output_location(out, "--out", {"--dataset-path": dataset_path})
    require_episodes(open_dataset(dataset_path), "--dataset-path")
    _train_job(dataset_path, out, resume, overwrite, embodiment=embodiment, model_config=model_config,
               data_config=data_config, val_fraction=val_fraction)

    ckpt = train_idm(IDMTrainConfig(
        dataset_path=dataset_path, output_dir=out, embodiment=embodiment, model_config=model_config,
        data_config=data_config, batch_size=batch_size, max_steps=steps, save_steps=save_every,
        learning_rate=learning_rate, val_fraction=val_fraction, num_workers=num_workers, device=device,
        precision=precision, augment=augment, resume=resume, seed=seed))
    typer.echo(f"checkpoint: {ckpt}")


def extract_cmd(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="IDM checkpoint folder (or its run folder)."),
    videos: Path = typer.Option(..., "--videos", help="Folder of <Instruction>/<k>.mp4 videos."),
    out: Path = typer.Option(..., "--out", "-o", help="New LeRobot v3 dataset folder (must not exist)."),
    batch_size: int = typer.Option(64, "--batch-size", callback=at_least(1)),
    device: str = typer.Option("auto", "--device"),
    precision: str = typer.Option("auto", "--precision", help=precision_help("auto", "bf16", "fp32"),
                                  callback=precision_choice("auto", "bf16", "fp32")),
    sampling_steps: int = typer.Option(None, "--sampling-steps", help="Flow-matching sampling steps (default: "
                                       "the model's).", callback=at_least(1)),
    shard: str = typer.Option(None, "--shard", help="i/n: label every n-th video starting at i (then re-run "
                              "without --shard to assemble)."),
    embodiment: str = typer.Option(None, "--embodiment", "-e", help="Write with this embodiment's layout."),
    keep_work: bool = typer.Option(False, "--keep-work", help="Keep <out>.work/ (per-video labels) afterwards."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Discard labels in <out>.work/ made with other "
                                   "settings and start fresh (a rerun otherwise refuses them)."),
    videos_per_batch: int = typer.Option(16, "--videos-per-batch", callback=at_least(1),
                                         help="Flow IDMs: label this many videos in shared batches (same labels)."),
    stride: int = typer.Option(1, "--stride", callback=at_least(1),
                               help="Flow IDMs: a window every STRIDE frames (1..horizon). Cost per frame: one "
                               "image encoding + 1/STRIDE of a sampled chunk; each frame averages horizon/STRIDE "
                               "chunks (1: the reference's ensemble)."),
    compile_model: bool = typer.Option(False, "--compile", help="Flow IDMs: torch.compile the frame encoding, "
                                       "context mix and action DiT, with CUDA graphs on a GPU (a one-off compile of "
                                       "~1 min, then ~3.4x faster labelling, the same labels)."),
) -> None:
    """Label every frame of every video with IDM actions; write a LeRobot v3 dataset. Resumable."""
    from dreamgen.idm.extract import ExtractConfig, extract_actions
    from dreamgen.io import check_output_location

    shard_in = parse_shard(shard)
    check_output_location(out, "--out", {"--videos": videos, "--checkpoint": checkpoint})
    res = extract_actions(ExtractConfig(checkpoint, videos, out, batch_size=batch_size, device=device,
                                        precision=precision, num_inference_steps=sampling_steps, shard=shard_in,
                                        embodiment=embodiment, keep_work=keep_work, overwrite=overwrite,
                                        videos_per_batch=videos_per_batch, stride=stride,
                                        compile=compile_model))
    typer.echo(res.summary())
    if res.failed and res.out is None and not res.labelled:
        raise DreamgenError(f"{videos}: every video failed")


def eval_cmd(
    checkpoint: Path = typer.Option(..., "--checkpoint"),
    dataset_path: Path = typer.Option(None, "--dataset-path", "--dataset",
                                      help="Default: the training dataset's held-out episodes."),
    episodes: str = typer.Option(None, "--episodes", help="Comma-separated episode indices."),
    device: str = typer.Option("auto", "--device"),
    sampling_steps: int = typer.Option(None, "--sampling-steps", help="Flow-matching sampling steps (default: "
                                       "the model's).", callback=at_least(1)),
    replay: bool = typer.Option(False, "--replay", help="ToyWorld datasets: also execute the labels open-loop "
                                "from each episode's initial state and report task success."),
) -> None:
    """Normalised action error of IDM labels vs. ground truth, against predicting the mean action."""
    from dreamgen.idm.evaluate import EvalConfig, evaluate_idm, replay_success

    try:
        ids = [int(x) for x in episodes.split(",")] if episodes else None
    except ValueError:
        raise DreamgenError(f"--episodes must be comma-separated episode indices (e.g. 0,3,5), got {episodes!r}") from None
    res = evaluate_idm(EvalConfig(checkpoint, dataset_path, ids, device=device, num_inference_steps=sampling_steps))
    if replay:
        from dreamgen.idm.checkpoint import load_idm

        path = dataset_path or load_idm(checkpoint)[2].get("dataset_path")
        res.update(replay_success(checkpoint, path, ids, device=device, num_inference_steps=sampling_steps))
    typer.echo(json.dumps(res, indent=2))


def register(app: typer.Typer) -> None:
    app.command("convert")(convert_cmd)
    app.command("preprocess")(preprocess_cmd)
    app.command("idm-train")(train_cmd)
    app.command("idm-extract")(extract_cmd)
    app.command("idm-eval")(eval_cmd)
