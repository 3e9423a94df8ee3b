"""The training commands agree with the config dataclasses they fill (issue 19, item 7).

finetune-wm -> FinetuneConfig, idm-train -> IDMTrainConfig, finetune-policy -> PolicyTrainConfig. For
each command:

- every option either fills the config field of its name (or a listed alias) or is listed as
  command-only, and every field either has an option or is listed as not on the command line, so a
  new field or flag is a decision, not an accident;
- an option's default is the field's default, or None (the preset or the config fills it in); a
  "(default X)" in the help names the field's default;
- a field's comment (read as LeRobot's draccus reads it) reaches the user: the option has help, and a
  choice list ("auto | bf16 | fp32") in the comment is the one in the help.

The options are not generated from the dataclasses at import time: the config modules import torch,
LeRobot and diffusers (~20x the CLI's own start-up), and every `dreamgen ...` call would pay for it.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

COMMANDS = {
    "idm-train": dict(
        config="dreamgen.idm.train:IDMTrainConfig",
        aliases={"out": "output_dir", "save_every": "save_steps", "steps": "max_steps"},  # the shared vocabulary
        command_only={"overwrite"},
        not_on_cli={"save_total_limit", "eval_steps", "log_steps", "weight_decay", "warmup_ratio", "grad_clip",
                    "max_val_samples", "tune_encoder", "stats", "preload",
                    "episodes", "embodiment_obj"},  # in-memory data: library callers only
    ),
    "finetune-policy": dict(
        config="dreamgen.policy.config:PolicyTrainConfig",
        aliases={"dataset": "datasets", "out": "output_dir", "video_key": "video_keys", "no_state": "use_state",
                 "precision": "mixed_precision", "save_every": "save_freq"},
        # the command translates the shared --precision spelling into accelerate's (auto: the preset's)
        translated={"precision": {"fp32": "no", "auto": None}},
        command_only={"config"},  # the YAML preset the other settings come from
        not_on_cli={"lerobot_args",  # the unknown --policy.* / --optimizer.* flags
                    "command", "vision_trunk_layers",
                    "vision_instruction_film", "vision_pretrained_trunk",
                    "vision_freeze_trunk", "vision_attended_keypoints", "vision_grounded_keypoints"},  # recorded by the command / set in presets
    ),
    "finetune-wm": dict(
        config="dreamgen.worldmodel.finetune:FinetuneConfig",
        aliases={"precision": "mixed_precision"},
        translated={"precision": {"fp32": "no"}},
        command_only=set(),
        not_on_cli={"keep_checkpoints", "log_every", "max_videos", "command", "preset_overrides"},
    ),
}


def _config_class(spec: str) -> type:
    import importlib

    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


@pytest.fixture(scope="module")
def cli():
    import typer.main

    from dreamgen.cli import app

    return typer.main.get_command(app)


def _field_default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _field_comment(cls: type, name: str) -> str:
    from draccus.wrappers.docstring import get_attribute_docstring

    doc = get_attribute_docstring(cls, name)
    return " ".join(x for x in (doc.comment_above, doc.comment_inline, doc.docstring_below) if x).strip()


def _choices(text: str) -> set[str] | None:
    """The words of a choice list `a | b | c` (parenthesised remarks and quotes dropped), if the text has one."""
    text = re.sub(r"\([^)]*\)", "", text).replace('"', "").replace("`", "")
    m = re.search(r"[\w.-]+(?:\s*\|\s*[\w.-]+)+", text)
    return {w.strip().rstrip(".") for w in m.group(0).split("|")} if m else None


def _same(a, b) -> bool:
    if isinstance(a, Path) or isinstance(b, Path):
        return str(a) == str(b)
    return a == b


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_is_a_field_and_every_field_a_decision(cli, name):
    spec = COMMANDS[name]
    fields = {f.name for f in dataclasses.fields(_config_class(spec["config"]))}
    params = {p.name for p in cli.commands[name].params}
    mapped = {spec["aliases"].get(p, p) for p in params}
    strays = sorted(p for p in params - spec["command_only"] if spec["aliases"].get(p, p) not in fields)
    assert not strays, f"{name}: options that fill no config field (rename, alias or list as command-only): {strays}"
    silent = sorted(fields - mapped - spec["not_on_cli"])
    assert not silent, f"{name}: config fields with no option (add one or list them as not on the CLI): {silent}"
    stale = sorted((spec["not_on_cli"] - fields) | (spec["not_on_cli"] & mapped))
    assert not stale, f"{name}: the not-on-CLI list names {stale}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_option_defaults_are_the_config_defaults(cli, name):
    spec = COMMANDS[name]
    cls = _config_class(spec["config"])
    fields = {f.name: f for f in dataclasses.fields(cls)}
    wrong = []
    for p in cli.commands[name].params:
        field = fields.get(p.name)  # aliased options change shape (list, negation): their defaults differ
        if field is None:
            continue
        default = _field_default(field)
        if p.default is not None and default is not dataclasses.MISSING and not _same(p.default, default):
            wrong.append(f"--{p.name}: option {p.default!r}, {cls.__name__} {default!r}")
        said = re.search(r"\(default ([^):\s]+)\)", p.help or "")
        if said and not _same(_parse(said.group(1)), default):
            wrong.append(f"--{p.name}: help says default {said.group(1)}, {cls.__name__} {default!r}")
    assert not wrong, f"{name}: " + "; ".join(wrong)


def _parse(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_field_comments_reach_the_help(cli, name):
    spec = COMMANDS[name]
    cls = _config_class(spec["config"])
    fields = {f.name for f in dataclasses.fields(cls)}
    wrong = []
    for p in cli.commands[name].params:
        field = spec["aliases"].get(p.name, p.name)
        comment = _field_comment(cls, field) if field in fields else ""
        if not comment:
            continue
        if not p.help:
            wrong.append(f"--{p.name}: {cls.__name__}.{field} says {comment!r}, the option has no help")
            continue
        in_config, in_help = _choices(comment), _choices(p.help)
        to_field = spec.get("translated", {}).get(p.name)
        if to_field and in_help is not None:
            in_help = {to_field.get(c, c) for c in in_help} - {None}
        if in_config and in_help is not None and in_config != in_help:
            wrong.append(f"--{p.name}: choices {sorted(in_help)} in the help, {sorted(in_config)} in "
                         f"{cls.__name__}.{field}")
        if in_config and in_help is None:
            wrong.append(f"--{p.name}: the help lists no choices, {cls.__name__}.{field} has {sorted(in_config)}")
    assert not wrong, f"{name}: " + "; ".join(wrong)


def test_choice_lists_are_read_as_draccus_reads_comments():
    from dreamgen.idm.train import IDMTrainConfig

    assert _field_comment(IDMTrainConfig, "precision").startswith("auto (bf16 on CUDA")
    assert _choices("auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp32") == {"auto", "bf16", "fp32"}
    assert _choices('Instruction feature: "bow" | "none"; None = bow') == {"bow", "none"}
    assert _choices("Run folder for checkpoints.") is None


def test_progress_bars_are_quiet_in_log_files():
    """Off a terminal, tqdm (which reads TQDM_* defaults when imported) redraws at most every 30 s."""
    import subprocess
    import sys

    probe = ("import io, sys\nfrom dreamgen.cli import quiet_progress_in_logs\n"
             "class T(io.StringIO):\n    def isatty(self): return True\n"
             "quiet_progress_in_logs(T() if sys.argv[1] == 'tty' else io.StringIO())\n"
             "from tqdm import tqdm\nprint(tqdm(total=1, file=io.StringIO()).mininterval)")

    def mininterval(where: str, env: dict | None = None) -> float:
        import os

        e = {k: v for k, v in os.environ.items() if k != "TQDM_MININTERVAL"} | (env or {})
        out = subprocess.run([sys.executable, "-c", probe, where], capture_output=True, text=True, env=e, check=True)
        return float(out.stdout.strip())

    assert mininterval("tty") == 0.1  # tqdm's own default on a terminal
    assert mininterval("file") == 30.0
    assert mininterval("file", {"TQDM_MININTERVAL": "2"}) == 2.0  # the user's value wins
