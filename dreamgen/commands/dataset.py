"""`dreamgen dataset info|convert`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

ds_app = typer.Typer(help="Inspect and convert LeRobot / GR00T datasets.", no_args_is_help=True)


@ds_app.command("info")
def info_cmd(
    dataset: Path = typer.Argument(..., help="Dataset folder (LeRobot v3 or GR00T-flavoured v2.0/v2.1)."),
    check_videos: bool = typer.Option(False, "--check-videos", help="Probe every episode's video files."),
) -> None:
    """Print a dataset's version, fps, episodes, frames, keys and widths as JSON."""
    from dreamgen.data import open_dataset
    from dreamgen.data.dataset import check_video_files
    from dreamgen.errors import DatasetError

    ds = open_dataset(dataset)
    d = ds.describe()
    if check_videos:
        problems = check_video_files(ds)
        d["video_problems"] = problems
        typer.echo(json.dumps(d, indent=2))
        if problems:
            raise DatasetError(f"{dataset}: {len(problems)} video problem(s), first: {problems[0]}")
        return
    typer.echo(json.dumps(d, indent=2))


@ds_app.command("convert")
def convert_cmd(
    src: Path = typer.Argument(..., help="GR00T-flavoured LeRobot v2.0/v2.1 dataset."),
    dst: Path = typer.Argument(..., help="New LeRobot v3 dataset folder (must not exist)."),
    embodiment: str = typer.Option(None, "--embodiment", "-e", help="Layout to use if the source has no modality.json."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace DST if it exists."),
    reencode: bool = typer.Option(False, "--reencode", help="Encode the videos again (h264, crf 15) even where "
                                  "the source streams could be copied as they are."),
) -> None:
    """Convert a GR00T v2.x dataset to LeRobot v3, keeping meta/modality.json, the video streams (copied, not
    re-encoded, where LeRobot can use them), next.reward, next.done and the annotation columns. A rerun with
    the same settings finds the finished output and does nothing; an interrupted one starts cleanly."""
    from dreamgen.data import convert_v2_to_v3

    out = convert_v2_to_v3(src, dst, embodiment, overwrite=overwrite, reencode=reencode)
    typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(ds_app, name="dataset")
