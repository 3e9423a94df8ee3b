"""`dreamgen` command line: one subcommand per stage, each a thin wrapper over a library function.

Each stage's commands live in `dreamgen/commands/<stage>.py` and expose `register(app)`. Heavy
imports (torch, lerobot, diffusers) happen inside the commands so that `--help` stays fast.
"""

from __future__ import annotations

import errno
import importlib
import logging
import os
import sys

import typer

from dreamgen import __version__
from dreamgen.errors import DreamgenError

COMMAND_MODULES = [
    "dreamgen.commands.embodiments",
    "dreamgen.commands.dataset",
    "dreamgen.commands.toyworld",
    "dreamgen.commands.worldmodel",
    "dreamgen.commands.idm",
    "dreamgen.commands.policy",
    "dreamgen.commands.bench",
    "dreamgen.commands.demo",
]

USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}

app = typer.Typer(
    name="dreamgen",
    help="Turn video world models into robot training data (DreamGen): fine-tune a world model, "
    "dream videos, label them with an inverse dynamics model, train policies, benchmark dreams.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dreamgen {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # torchcodec ships with lerobot[dataset] but needs system FFmpeg libraries; without them lerobot logs
    # a page-long traceback before falling back to PyAV, which is what dreamgen decodes with anyway.
    logging.getLogger("lerobot.utils.import_utils").setLevel(logging.ERROR)


for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(_name)
    except ModuleNotFoundError as exc:  # a stage not built yet: its commands are simply absent
        if exc.name != _name:
            raise
        continue
    _module.register(app)


def quiet_progress_in_logs(stream=None) -> None:
    """Progress bars redraw in place on a terminal; written to a log file every redraw is a new line (a
    10-minute training left ~20,000 of them). Off a terminal, tqdm redraws at most every 30 s instead
    (tqdm reads TQDM_* variables as its defaults; a value the user set wins)."""
    stream = sys.stderr if stream is None else stream
    if not (hasattr(stream, "isatty") and stream.isatty()):
        os.environ.setdefault("TQDM_MININTERVAL", "30")


def main() -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")
    quiet_progress_in_logs()
    try:
        app()
    except DreamgenError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except OSError as exc:  # the environment refused (permissions, read-only or full disk): a user error
        if exc.errno not in USER_ERRNOS:
            raise
        typer.echo(f"error: {exc.filename or 'output'}: {exc.strerror}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
