"""`dreamgen demo` (what `make demo` runs) and `dreamgen experiment`: the whole loop on ToyWorld."""

from __future__ import annotations

from pathlib import Path

import typer

REPO = Path(__file__).resolve().parents[2]  # a source checkout: where demo_data/ and checkpoints/ live
STEP_HELP = ("Run only these steps (repeatable): real, prior, world_model, dreams, idm, judge, neural, policies, "
             "eval, report. Default: all, skipping finished ones.")


def _resolve_config(spec: str) -> Path:
    from dreamgen.errors import DreamgenError
    from dreamgen.presets import find_preset, list_presets

    path = find_preset("experiment", spec)
    if path is None:
        raise DreamgenError(f"{spec}: no such config file (nor dreamgen/configs/experiment/{spec}.yaml; "
                            f"presets: {', '.join(list_presets('experiment'))})")
    return path


def _parse_sets(sets: list[str]) -> dict:
    import yaml

    from dreamgen.errors import DreamgenError

    out = {}
    for s in sets or []:
        if "=" not in s:
            raise DreamgenError(f"--set expects key.path=value, got {s!r}")
        k, v = s.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def _run(config: Path, out: Path, steps: list[str] | None, sets: list[str], runs: list[str] | None = None,
         overwrite: bool = False) -> Path:
    from dreamgen.experiment import Pipeline, load_pipeline_config

    cfg = load_pipeline_config(config, _parse_sets(sets))
    # committed demo data and checkpoints are found wherever the command runs from
    if cfg.real.dataset and not Path(cfg.real.dataset).exists() and (REPO / cfg.real.dataset).exists():
        cfg.real.dataset = str(REPO / cfg.real.dataset)
    if cfg.wm.pretrained and not Path(cfg.wm.pretrained).exists() and (REPO / cfg.wm.pretrained).exists():
        cfg.wm.pretrained = str(REPO / cfg.wm.pretrained)
    typer.echo(f"dreamgen: {cfg.name} from {config} -> {out}")
    Pipeline(cfg, out, echo=typer.echo, runs=runs or None).run(steps or None, overwrite=overwrite)
    return out


def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Output folder (a rerun resumes)."),
    full: bool = typer.Option(False, "--full/--quick", help="--quick (default): minutes on a CPU with small step "
                              "counts; --full: retrain everything at useful sizes (meant for a GPU)."),
    config: str = typer.Option(None, "--config", help="Another pipeline YAML instead of the quick/full preset."),
    step: list[str] = typer.Option(None, "--step", help=STEP_HELP),
    set_: list[str] = typer.Option(None, "--set", help="Override a config value: key.path=value (YAML value)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Discard the finished steps in OUT (made with other "
                                   "settings) and start fresh; a rerun otherwise refuses other settings."),
) -> None:
    """The whole DreamGen loop on ToyWorld, with a report (OUT/report.html, OUT/report.md)."""
    cfg = _resolve_config(config or ("demo_full" if full else "demo_quick"))
    _run(cfg, out, step, set_, overwrite=overwrite)
    typer.echo(f"report: {out / 'report.html'} (and report.md)")


def experiment(
    config: str = typer.Option("toyworld", "--config", help="Experiment YAML (file or name in dreamgen/configs/experiment/)."),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder (default runs/experiment/<config name>)."),
    step: list[str] = typer.Option(None, "--step", help=STEP_HELP),
    set_: list[str] = typer.Option(None, "--set", help="Override a config value: key.path=value (YAML value)."),
    run: list[str] = typer.Option(None, "--run", help="Only these policy runs in the policies/eval steps "
                                  "(repeatable; e.g. real_only_s0, scale_50_s0): lets several processes share a GPU."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Discard the finished steps in OUT (made with other "
                                   "settings) and start fresh; a rerun otherwise refuses other settings."),
) -> None:
    """The DreamGen experiment on ToyWorld (docs/EXPERIMENT.md): real-only vs real+neural policies."""
    cfg = _resolve_config(config)
    _run(cfg, out or Path("runs/experiment") / cfg.stem, step, set_, run, overwrite)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
    app.command("experiment")(experiment)
