"""`dreamgen finetune-wm | generate` (the world-model stage)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

from dreamgen.commands.checks import (
    PRECISIONS,
    at_least,
    in_range,
    parse_shard,
    parse_size,
    precision_choice,
    precision_help,
)

# `generate`'s speed levers: their help texts (long, so kept out of the signature)
SPEED_HELP = {
    "fast": "The fast stack: torch.compile (max-autotune-no-cudagraphs) + first-block step cache (fbc:0.05) + FP8 "
            "linears (torchao, `pip install dreamgen[fast]`; CUDA >= sm89 only, skipped elsewhere). The options "
            "below override its parts, e.g. --fast --cache none. The sidecar JSON records the levers used.",
    "compile_mode": "default | max-autotune-no-cudagraphs | max-autotune | reduce-overhead | none.",
    "cache": "Step cache (diffusers hooks), KIND[:THRESHOLD]: fbc[:0.05] (first-block cache) | taylorseer[:3] | "
             "faster[:3] (FasterCache: approximates the unconditional pass) | none. Approximate: see "
             "docs/worldmodel.md for the gates.",
    "attention_backend": "diffusers attention backend, e.g. _native_cudnn, flash.",
    "attention_window": "T,H,W: block-sparse local self-attention (flex) within T latent frames / H x W patches, "
                        "plus the first frame (Cosmos2; approximate; use with --compile-mode).",
}


def _size(text: str | None, flag: str = "--resolution") -> list[int] | None:
    return parse_size(text, flag)


def finetune_wm_cmd(
    data: Path = typer.Argument(..., help="A LeRobot dataset (v3 or GR00T v2.x) or a folder of <name>.mp4 + "
                                          "<name>.txt prompts."),
    output_dir: Path = typer.Argument(..., help="New folder for the trained model (LoRA or full weights)."),
    preset: str = typer.Option("toy", "--preset", "-p", help="toy | cosmos_predict2_2b | cosmos_predict2_14b | "
                               "cosmos_predict2_5_2b | cosmos_predict2_5_14b | cosmos_predict2_5_toy | "
                               "wan2_1_i2v_14b | a preset YAML."),
    embodiment: str = typer.Option(None, "--embodiment", "-e", help="Gives video key, fps, resolution, frame "
                                   "count and prompt prefix."),
    mode: str = typer.Option("lora", "--mode", help="lora | full."),
    init: str = typer.Option("pretrained", "--init", help="pretrained | scratch (scratch trains every "
                             "component, autoencoder included; needs --mode full)."),
    pretrained: str = typer.Option(None, "--pretrained", help="Local diffusers checkpoint folder."),
    lora_rank: int = typer.Option(None, "--lora-rank", callback=at_least(1)),
    lora_alpha: int = typer.Option(None, "--lora-alpha", callback=at_least(1)),
    lora_targets: str = typer.Option(None, "--lora-targets", help="Comma-separated module names "
                                     "(default: attention q/k/v/out and MLP projections)."),
    steps: int = typer.Option(None, "--steps", help="Transformer training steps.", callback=at_least(1)),
    vae_steps: int = typer.Option(None, "--vae-steps", help="Autoencoder steps (scratch only).",
                                callback=at_least(1)),
    batch_size: int = typer.Option(None, "--batch-size", help="Clips per step per GPU.", callback=at_least(1)),
    lr: float = typer.Option(None, "--lr", callback=in_range(0, 1, lo_open=True)),
    grad_accum: int = typer.Option(1, "--grad-accum", callback=at_least(1)),
    num_frames: int = typer.Option(None, "--num-frames", help="Frames per clip (4k+1).", callback=at_least(1)),
    resolution: str = typer.Option(None, "--resolution", help="HxW (multiples of 16)."),
    frame_stride: int = typer.Option(1, "--frame-stride", help="Take every n-th frame of the source videos.",
                                    callback=at_least(1)),
    video_key: str = typer.Option(None, "--video-key"),
    precision: str = typer.Option("auto", "--precision", "--mixed-precision",
                                   help=precision_help("auto", "bf16", "fp32"),
                                   callback=precision_choice("auto", "bf16", "fp32")),
    gradient_checkpointing: bool = typer.Option(None, "--gradient-checkpointing/--no-gradient-checkpointing",
                                                help="Default: on for GPU."),
    save_every: int = typer.Option(500, "--save-every", help="Checkpoint every N steps.", callback=at_least(1)),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in OUTPUT_DIR."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option(None, "--device", help="cuda | cpu (default: cuda if available)."),
    extra_data: list[Path] = typer.Option([], "--extra-data", help="Another training source (repeatable), "
                                          "trained on together with DATA (e.g. a prior of other arms)."),
    vae_minutes: float = typer.Option(None, "--vae-minutes", help="Wall-time budget of the autoencoder phase.",
                                      callback=in_range(0, 1e6, lo_open=True)),
    minutes: float = typer.Option(None, "--minutes", help="Wall-time budget of the transformer phase (it saves "
                                  "and finishes early).", callback=in_range(0, 1e6, lo_open=True)),
) -> None:
    """Fine-tune a video world model on one robot's videos (LoRA or full), or train the toy one from
    scratch. Multi-GPU: `accelerate launch -m dreamgen.cli finetune-wm ...`."""
    from dreamgen.io import check_output_location
    from dreamgen.worldmodel.finetune import FinetuneConfig, finetune_world_model

    check_output_location(output_dir, "OUTPUT_DIR", {"DATA": data, **{f"--extra-data {p}": p for p in extra_data}})
    cfg = FinetuneConfig(
        data=str(data), output_dir=str(output_dir), preset=preset, embodiment=embodiment, mode=mode, init=init,
        pretrained=pretrained, lora_rank=lora_rank, lora_alpha=lora_alpha,
        lora_targets=[t.strip() for t in lora_targets.split(",") if t.strip()] if lora_targets else None,
        steps=steps, vae_steps=vae_steps, batch_size=batch_size, lr=lr, grad_accum=grad_accum,
        num_frames=num_frames, resolution=_size(resolution), frame_stride=frame_stride, video_key=video_key,
        mixed_precision="no" if precision == "fp32" else precision,
        gradient_checkpointing=gradient_checkpointing, save_every=save_every,
        resume=resume, seed=seed, device=device, extra_data=[str(p) for p in extra_data], vae_minutes=vae_minutes,
        minutes=minutes, command=shlex.join(["dreamgen", *sys.argv[1:]]),
    )
    out = finetune_world_model(cfg)
    typer.echo(f"world model written to {out}")


def generate_cmd(
    model: str = typer.Argument(..., help="finetune-wm output folder, diffusers checkpoint folder, or preset "
                                          "name with a pretrained path."),
    inputs: Path = typer.Argument(..., help="JSON/CSV list (image, prompt) or a folder of images + .txt prompts."),
    output_dir: Path = typer.Argument(..., help="Where <i>_<Instruction>.mp4 + .json go (resumable)."),
    preset: str = typer.Option(None, "--preset", "-p", help="Preset for a bare diffusers folder."),
    lora: str = typer.Option(None, "--lora", help="Extra LoRA (a finetune-wm folder or .safetensors)."),
    seed: int = typer.Option(0, "--seed", help="Video i uses seed + i."),
    sampling_steps: int = typer.Option(None, "--sampling-steps", "--num-steps", help="Denoising steps "
                                       "(default: the preset's).", callback=at_least(1)),
    guidance: float = typer.Option(None, "--guidance", callback=in_range(0, 100)),
    negative_prompt: str = typer.Option(None, "--negative-prompt"),
    num_frames: int = typer.Option(None, "--num-frames", callback=at_least(1)),
    fps: float = typer.Option(None, "--fps", callback=in_range(0, 1000, lo_open=True)),
    resolution: str = typer.Option(None, "--resolution", help="HxW (default: the model's)."),
    videos_per_prompt: int = typer.Option(1, "--videos-per-prompt", callback=at_least(1)),
    prompt_prefix: str = typer.Option(None, "--prompt-prefix", help="Default: the model's fine-tuning prefix."),
    shard: str = typer.Option(None, "--shard", help="i/n: this process makes every n-th video (combined with "
                              "torchrun/accelerate ranks)."),
    disable_guardrail: bool = typer.Option(False, "--disable-guardrail", help="Explicitly run Cosmos without "
                                           "NVIDIA's cosmos_guardrail safety checker."),
    device: str = typer.Option(None, "--device"),
    precision: str = typer.Option("auto", "--precision", "--dtype", help=precision_help(*PRECISIONS),
                                   callback=precision_choice(*PRECISIONS)),
    fused_cfg: bool = typer.Option(True, "--fused-cfg/--no-fused-cfg", help="Guidance passes in one batch."),
    fast: bool = typer.Option(False, "--fast", help=SPEED_HELP["fast"]),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the transformer (mode default)."),
    compile_mode: str = typer.Option(None, "--compile-mode", help=SPEED_HELP["compile_mode"]),
    cache: str = typer.Option(None, "--cache", help=SPEED_HELP["cache"]),
    fp8: bool = typer.Option(None, "--fp8/--no-fp8", help="FP8 linear layers via torchao (approximate)."),
    attention_backend: str = typer.Option(None, "--attention-backend", help=SPEED_HELP["attention_backend"]),
    attention_window: str = typer.Option(None, "--attention-window", help=SPEED_HELP["attention_window"]),
    limit: int = typer.Option(None, "--limit", help="Only the first N videos.", callback=at_least(1)),
    overwrite: bool = typer.Option(False, "--overwrite", help="Discard dreams made with other settings in "
                                   "OUTPUT_DIR and start fresh (a rerun otherwise refuses them)."),
) -> None:
    """Dream robot videos from (first frame, instruction) pairs. Faster: --fast (compile + step cache +
    FP8 on GPU), or the single levers --compile-mode / --cache / --fp8 / --attention-window."""
    from dreamgen.io import check_output_location
    from dreamgen.worldmodel.generate import GenerateConfig, generate_videos

    parse_shard(shard)
    check_output_location(output_dir, "OUTPUT_DIR", {"INPUTS": inputs if inputs.is_dir() else None})
    cfg = GenerateConfig(
        model=model, inputs=str(inputs), output_dir=str(output_dir), preset=preset, lora=lora, seed=seed,
        num_steps=sampling_steps, guidance=guidance, negative_prompt=negative_prompt, num_frames=num_frames, fps=fps,
        resolution=_size(resolution), videos_per_prompt=videos_per_prompt, prompt_prefix=prompt_prefix,
        shard=shard, disable_guardrail=disable_guardrail, device=device, dtype=precision, fused_cfg=fused_cfg,
        compile=compile_model, attention_backend=attention_backend, limit=limit, overwrite=overwrite,
        fast=fast, compile_mode=compile_mode, cache=cache, fp8=fp8, attention_window=attention_window,
    )
    written = generate_videos(cfg)
    typer.echo(f"{len(written)} videos written to {output_dir}")


def register(app: typer.Typer) -> None:
    app.command("finetune-wm")(finetune_wm_cmd)
    app.command("generate")(generate_cmd)
