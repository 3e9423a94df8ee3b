"""One vocabulary across subcommands (issue #17, item 7): --steps, --batch-size, --save-every, --precision,
-e/--embodiment and -o/--out mean one thing in every `dreamgen` command. The reference entry points
(scripts/idm_training.py, scripts/gr00t_finetune.py, IDM_dump/) keep the reference's own flags."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import typer
from typer.testing import CliRunner

from dreamgen.cli import app

# canonical long flag -> (parameter name, Python type, short flag, what the help must say)
VOCABULARY = {
    "--steps": ("steps", int, None, "step"),
    "--batch-size": ("batch_size", int, None, None),
    "--save-every": ("save_every", int, None, "every"),
    "--precision": ("precision", str, None, None),
    "--embodiment": ("embodiment", str, "-e", None),
    "--out": ("out", Path, "-o", None),
}
# older spellings: allowed only as second names of the canonical option, never on their own
SYNONYMS = {"--max-steps": "--steps", "--save-steps": "--save-every", "--save-freq": "--save-every",
            "--mixed-precision": "--precision", "--dtype": "--precision", "--output-dir": "--out"}
PRECISION_VALUES = {"auto", "bf16", "fp16", "fp32"}
TRAINERS = ("finetune-wm", "idm-train", "finetune-policy")
# training commands too small for checkpoints, precision or an embodiment: --steps still means training steps
SMALL_TRAINERS = ("toyworld pretrain-trunk",)


def _commands(group, prefix: str = "") -> dict:
    """Every leaf command by its full name ("dataset convert"); typer brings its own click, so duck-typed."""
    out = {}
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            out.update(_commands(cmd, f"{prefix}{name} "))
        else:
            out[f"{prefix}{name}"] = cmd
    return out


COMMANDS = _commands(typer.main.get_command(app))


def _options(cmd) -> list:
    return [p for p in cmd.params if p.param_type_name == "option"]


def test_every_subcommand_is_walked():
    assert {"finetune-wm", "generate", "idm-train", "idm-extract", "finetune-policy", "dataset convert",
            "toyworld collect", "bench", "demo"} <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_shared_flags_mean_one_thing(name):
    for opt in _options(COMMANDS[name]):
        names = set(opt.opts) | set(opt.secondary_opts)
        for flag, (dest, kind, short, says) in VOCABULARY.items():
            if flag in names or (short and short in names):
                where = f"{name} {'/'.join(opt.opts)}"
                assert opt.opts[0] == flag, f"{where}: {flag} must be the option's first name"
                assert (opt.name, opt.type_descriptor.annotation) == (dest, kind), where
                assert short is None or short in names, f"{where}: lacks {short}"
                assert says is None or says in (opt.help or "").lower(), f"{where}: help {opt.help!r}"
        for old, canonical in SYNONYMS.items():
            assert old not in names or canonical in names, f"{name}: {old} without {canonical}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_steps_are_training_steps_and_sampling_has_its_own_flag(name):
    for opt in _options(COMMANDS[name]):
        if opt.name == "steps":
            assert name in TRAINERS + SMALL_TRAINERS, \
                f"{name}: --steps is for training commands; sampling uses --sampling-steps"
        if any(w in (opt.help or "").lower() for w in ("sampling steps", "denoising steps")):
            assert opt.opts[0] == "--sampling-steps", f"{name} {opt.opts}"


def test_trainers_share_the_training_flags():
    for name in TRAINERS:
        flags = {o.opts[0] for o in _options(COMMANDS[name])}
        assert {"--steps", "--batch-size", "--save-every", "--precision", "--embodiment"} <= flags, name


@pytest.mark.parametrize("name", sorted(n for n, c in COMMANDS.items() if any(o.name == "precision" for o in
                                                                                 _options(c))))
def test_precision_speaks_the_shared_words(name):
    from dreamgen.errors import DreamgenError

    opt = next(o for o in _options(COMMANDS[name]) if o.name == "precision")
    ctx = SimpleNamespace(resilient_parsing=False)
    accepted = set()
    for value in PRECISION_VALUES:
        try:
            accepted.add(opt.callback(ctx, opt, value))
        except DreamgenError as exc:
            assert "--precision must be one of" in str(exc)
    assert {"auto", "bf16"} <= accepted <= PRECISION_VALUES
    assert all(v in opt.help for v in accepted), opt.help
    with pytest.raises(DreamgenError, match="--precision must be one of"):
        opt.callback(ctx, opt, "float64")


def test_cli_refuses_a_bad_precision_in_one_line(tmp_path):
    res = CliRunner().invoke(app, ["idm-extract", "--checkpoint", str(tmp_path), "--videos", str(tmp_path),
                                   "-o", str(tmp_path / "o"), "--precision", "fp64"])
    assert res.exit_code != 0 and "--precision must be one of auto | bf16 | fp32" in str(res.exception or res.output)
