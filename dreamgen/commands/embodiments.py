"""`dreamgen embodiments list|show|stats`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

emb_app = typer.Typer(help="The embodiment registry: built-in robots and user files.", no_args_is_help=True)


@emb_app.command("list")
def list_cmd() -> None:
    """List built-in embodiments with their aliases and layout sizes."""
    from dreamgen.embodiments import builtin_names, get_embodiment

    typer.echo(f"{'name':<10} {'fps':>5} {'state':>5} {'action':>6}  aliases")
    for name in builtin_names():
        e = get_embodiment(name)
        typer.echo(f"{e.name:<10} {e.fps:>5g} {e.state_dim:>5} {e.action_dim:>6}  {', '.join(e.aliases)}")


@emb_app.command("show")
def show_cmd(
    embodiment: str = typer.Argument(..., help="Name, alias, YAML/JSON file or folder with modality.json + stats.json."),
    with_stats: bool = typer.Option(False, "--stats", help="Include the normalisation statistics."),
) -> None:
    """Print one embodiment as JSON."""
    from dreamgen.embodiments import get_embodiment

    d = get_embodiment(embodiment).to_dict()
    if not with_stats:
        d["stats"] = {k: sorted(v) for k, v in d["stats"].items()}
    typer.echo(json.dumps(d, indent=2))


@emb_app.command("stats")
def stats_cmd(
    dataset: Path = typer.Option(..., "--dataset", help="LeRobot v3 or GR00T v2.x dataset folder."),
    embodiment: str = typer.Option(..., "--embodiment", "-e", help="Embodiment whose layout the dataset must match."),
    out: Path = typer.Option(None, "--out", "-o", help="Where to write stats.json (default: print it)."),
) -> None:
    """Compute normalisation statistics (GR00T stats.json form) from a dataset."""
    from dreamgen.data import compute_stats, open_dataset, require_episodes
    from dreamgen.embodiments import get_embodiment
    from dreamgen.errors import OutputExistsError
    from dreamgen.io import atomic_write_text, to_json

    emb = get_embodiment(embodiment, dataset=dataset)
    ds = open_dataset(dataset)
    emb.check_widths(ds.state_dim, ds.action_dim, str(dataset))
    require_episodes(ds, "--dataset")  # names the file, episode and column of any NaN/inf
    text = to_json(compute_stats(ds), out or dataset, indent=2)
    if out is None:
        typer.echo(text)
        return
    if out.exists():
        raise OutputExistsError(f"{out}: already exists; not overwriting")
    atomic_write_text(out, text)
    typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(emb_app, name="embodiments")
