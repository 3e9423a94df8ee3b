"""`dreamgen toyworld list|collect|eval|stats|frame`: the embedded MuJoCo tabletop world."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from dreamgen.commands.checks import at_least, in_range

# = dreamgen.toyworld.env.IMAGE_SIZE, written out so that `--help` does not import MuJoCo (a test checks they agree)
IMAGE_SIZE = 96

tw_app = typer.Typer(help="ToyWorld: MuJoCo tabletop with a robot arm, scripted experts, data collection and "
                     "closed-loop evaluation.", no_args_is_help=True)


def _names(values: list[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        out += [x.strip() for x in v.split(",") if x.strip()]
    return out


def _all_or(values: list[str], kind: str) -> list[str]:
    from dreamgen.toyworld.scene import ENVIRONMENTS
    from dreamgen.toyworld.tasks import BEHAVIORS

    names = _names(values)
    if names == ["all"]:
        return list(BEHAVIORS if kind == "behavior" else ENVIRONMENTS)
    return names


@tw_app.command("list")
def list_cmd() -> None:
    """List behaviors, environments and arm styles."""
    from dreamgen.toyworld.scene import ARM_STYLES, ENVIRONMENTS
    from dreamgen.toyworld.tasks import BEHAVIORS

    typer.echo("behaviors:")
    for b in BEHAVIORS.values():
        typer.echo(f"  {b.name:<12} {b.description} (e.g. '{b.template}', limit {b.max_steps} steps)")
    typer.echo("environments:")
    for e in ENVIRONMENTS.values():
        typer.echo(f"  {e.name:<12} {e.description}")
    typer.echo("arm styles:")
    for s in ARM_STYLES.values():
        typer.echo(f"  {s.name:<12} {s.description}")


@tw_app.command("collect")
def collect_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="New LeRobot v3 dataset folder (must not exist)."),
    behaviors: list[str] = typer.Option(["pick_place"], "--behaviors", help="Comma-separated behaviors, or 'all'."),
    envs: list[str] = typer.Option(["default"], "--envs", help="Comma-separated environments, or 'all'."),
    episodes: int = typer.Option(50, "--episodes", help="Episodes in total, round-robin over behavior x env.",
                                 callback=at_least(1)),
    seed: int = typer.Option(0, "--seed"),
    image_size: int = typer.Option(IMAGE_SIZE, "--image-size", help="Square image side in pixels.",
                                   callback=in_range(8, 512)),
    arm_style: str = typer.Option("default", "--arm-style", help="default | blue_box | floating."),
    embodiment: str = typer.Option("toyworld", "--embodiment", "-e", help="Embodiment written into the dataset."),
    action_noise: float = typer.Option(0.0, "--action-noise", help="Std of noise on the executed dx,dy,dz (the "
                                       "recorded actions stay the expert's corrections; policy demos only, "
                                       "not IDM data).", callback=in_range(0.0, 1.0)),
) -> None:
    """Record scripted-expert episodes (only successful ones) as a LeRobot v3 dataset."""
    from dreamgen.toyworld.collect import CollectConfig, collect

    cfg = CollectConfig(out=str(out), behaviors=_all_or(behaviors, "behavior"), envs=_all_or(envs, "env"),
                        episodes=episodes, seed=seed, image_size=image_size, arm_style=arm_style,
                        embodiment=embodiment, action_noise=action_noise)
    typer.echo(json.dumps(collect(cfg), indent=2))


@tw_app.command("eval")
def eval_cmd(
    policy: str = typer.Option(..., "--policy", help="'expert', 'random', or a checkpoint a registered loader reads."),
    behaviors: list[str] = typer.Option(["pick_place"], "--behaviors", help="Comma-separated behaviors, or 'all'."),
    envs: list[str] = typer.Option(["default"], "--envs", help="Comma-separated environments, or 'all'."),
    episodes: int = typer.Option(20, "--episodes", help="Episodes per (behavior, env).", callback=at_least(1)),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(None, "--out", "-o", help="Folder for results.json and rollout videos."),
    save_videos: int = typer.Option(2, "--save-videos", help="Rollout mp4s saved per (behavior, env).",
                                    callback=at_least(0)),
    image_size: int = typer.Option(IMAGE_SIZE, "--image-size", help="Square image side in pixels.",
                                   callback=in_range(8, 512)),
    arm_style: str = typer.Option("default", "--arm-style"),
    max_steps: int = typer.Option(None, "--max-episode-steps", help="Override the behaviors' time limits.",
                                  callback=at_least(1)),
) -> None:
    """Closed-loop success rate per behavior/env with Wilson 95% confidence intervals."""
    from dreamgen.policy.eval import load_toyworld_policy
    from dreamgen.toyworld.evaluate import evaluate, format_report

    pol = load_toyworld_policy(policy, seed=seed)
    report = evaluate(pol, _all_or(behaviors, "behavior"), _all_or(envs, "env"), episodes, seed=seed,
                      out_dir=out, save_videos=save_videos, image_size=image_size, arm_style=arm_style,
                      max_steps=max_steps)
    typer.echo(format_report(report))
    if out is not None:
        typer.echo(f"wrote {out / 'results.json'}")


@tw_app.command("stats")
def stats_cmd(
    dataset: Path = typer.Argument(..., help="A collected ToyWorld dataset."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write embodiment.yaml + modality.json + stats.json."),
    embodiment: str = typer.Option("toyworld", "--embodiment", "-e"),
) -> None:
    """Recompute the embodiment's normalisation statistics from a dataset and save the embodiment folder."""
    from dreamgen.toyworld.collect import embodiment_with_stats

    emb = embodiment_with_stats(dataset, embodiment)
    emb.save(out)
    typer.echo(f"wrote {out} (stats from {dataset})")


@tw_app.command("frame")
def frame_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="PNG file to write."),
    behavior: str = typer.Option("pick_place", "--behavior"),
    env: str = typer.Option("default", "--env"),
    seed: int = typer.Option(0, "--seed"),
    image_size: int = typer.Option(IMAGE_SIZE, "--image-size", help="Square image side in pixels.",
                                   callback=in_range(8, 512)),
    arm_style: str = typer.Option("default", "--arm-style"),
) -> None:
    """Render the first frame of an episode (what a world model dreams from) and print its instruction."""
    from PIL import Image

    from dreamgen.toyworld.env import render_initial_frame

    img, instruction = render_initial_frame(behavior, env, seed, image_size, arm_style)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(out)
    typer.echo(json.dumps({"image": str(out), "instruction": instruction}))


@tw_app.command("pretrain-trunk")
def pretrain_trunk_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for trunk.safetensors + trunk.json."),
    arm_styles: list[str] = typer.Option(["blue_box,floating"], "--arm-styles",
                                         help="Comma-separated prior arm styles (never 'default', the target)."),
    behaviors: list[str] = typer.Option(["all"], "--behaviors", help="Comma-separated behaviors, or 'all'."),
    envs: list[str] = typer.Option(["all"], "--envs", help="Comma-separated environments, or 'all'."),
    episodes: int = typer.Option(40, "--episodes", help="Expert episodes per (arm style, behavior, env).",
                                 callback=at_least(1)),
    seed: int = typer.Option(50_000, "--seed", help="Layout seed (keep it apart from demo and eval seeds)."),
    layers: int = typer.Option(2, "--layers", help="Trunk depth: the policy's vision_trunk_layers.",
                               callback=in_range(1, 4)),
    crop: int = typer.Option(90, "--crop", help="Training crop: the policy's crop_shape.", callback=at_least(8)),
    steps: int = typer.Option(3000, "--steps", help="Training steps.", callback=at_least(1)),
    batch_size: int = typer.Option(256, "--batch-size", callback=at_least(1)),
    device: str = typer.Option("auto", "--device"),
    workers: int = typer.Option(1, "--workers", help="Rendering processes.", callback=at_least(1)),
) -> None:
    """Pretrain a diffusion policy's image trunk to find objects, plate, bin and gripper in prior-arm
    frames (ToyWorld's stand-in for ImageNet weights); use it with the policy key vision_pretrained_trunk."""
    from dreamgen.toyworld.trunk import TrunkConfig, train_trunk

    cfg = TrunkConfig(out=str(out), arm_styles=_names(arm_styles), behaviors=_names(behaviors),
                      envs=_names(envs), episodes=episodes, seed=seed, layers=layers, crop=crop, steps=steps,
                      batch_size=batch_size, device=device, workers=workers)
    typer.echo(json.dumps(train_trunk(cfg)["held_out"], indent=2))


def register(app: typer.Typer) -> None:
    app.add_typer(tw_app, name="toyworld")
