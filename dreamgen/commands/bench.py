"""`dreamgen bench` (DreamGenBench IF / PA scores, a model x split table) and `dreamgen filter`."""

from __future__ import annotations

from pathlib import Path

import typer

from dreamgen.commands.checks import at_least, in_range, precision_choice, precision_help
from dreamgen.errors import DreamgenError


def _judge(kind: str, model: str | None, *, device, dtype, base_url, api_key, timeout, max_retries, seed,
           max_new_tokens):
    from dreamgenbench.judges import make_judge

    if kind in ("qwen", "qwen-vl"):
        return make_judge("qwen", model, device=device, dtype=dtype, max_new_tokens=max_new_tokens)
    if kind in ("openai", "gpt4o"):
        return make_judge("openai", model, base_url=base_url, api_key=api_key, timeout_s=timeout,
                          max_retries=max_retries, seed=seed, max_tokens=max_new_tokens)
    if kind == PIXEL_JUDGE:  # ToyWorld only, no model: positions read by colour (dreamgen/toyworld/pixel_judge.py)
        from dreamgen.toyworld.pixel_judge import ToyWorldPixelJudge

        return ToyWorldPixelJudge()
    raise DreamgenError(f"unknown judge {kind!r}: expected qwen, openai or {PIXEL_JUDGE}")


PIXEL_JUDGE = "toyworld-pixel"


def register(app: typer.Typer) -> None:
    _register_bench(app)
    _register_filter(app)


def _register_bench(app: typer.Typer) -> None:
    @app.command("bench")
    def bench(
        video_dirs: list[Path] = typer.Argument(..., help="Folders of <i>_<Instruction>.mp4 dreams: a root with "
                                                "<model>/<split>/ sub-folders, or the video folders themselves."),
        do_if: bool = typer.Option(False, "--if", help="Score instruction following."),
        do_pa: bool = typer.Option(False, "--pa", help="Score physics alignment. Neither flag: both."),
        judge: str = typer.Option("qwen", "--judge", help="qwen (local Qwen-VL), openai (GPT-4o / any "
                                  "OpenAI-compatible server) or toyworld-pixel (ToyWorld videos: success read "
                                  "from object/plate/bin colours; IF only)."),
        model: str = typer.Option(None, "--model", help="qwen: local model folder (default "
                                  "Qwen/Qwen2.5-VL-7B-Instruct from the local cache); openai: model name (gpt-4o)."),
        pa_judge: list[str] = typer.Option(None, "--pa-judge", help="PA judge as KIND:MODEL (repeatable), e.g. "
                                           "openai:gpt-4o; the PA score is the mean over them. Default: --judge."),
        out: Path = typer.Option(Path("bench_results"), "--out", "-o", help="Folder for CSVs, summaries and the table."),
        zeroshot: bool = typer.Option(False, "--zeroshot", help="Zero-shot IF prompt (videos of a model not "
                                      "fine-tuned on the robot: human hands fail)."),
        device: str = typer.Option(None, "--device", help="Torch device of a qwen judge (default cuda if available)."),
        precision: str = typer.Option("auto", "--precision", "--dtype", callback=precision_choice("auto", "bf16", "fp32"),
                                      help="qwen judge: " + precision_help("auto", "bf16", "fp32",
                                                                           auto="the checkpoint's dtype")),
        base_url: str = typer.Option(None, "--base-url", help="OpenAI-compatible server URL (e.g. vLLM)."),
        api_key: str = typer.Option(None, "--api-key", help="API key (default: OPENAI_API_KEY).", show_default=False),
        timeout: float = typer.Option(60.0, "--timeout", help="Seconds to wait for one API reply.",
                                     callback=in_range(0, 3600, lo_open=True)),
        max_retries: int = typer.Option(3, "--max-retries", help="API retries per video (timeouts, 429, 5xx).",
                                         callback=in_range(0, 100)),
        seed: int = typer.Option(0, "--seed"),
        max_new_tokens: int = typer.Option(4, "--max-new-tokens", help="Reply length cap (the reference uses 4).",
                                            callback=at_least(1)),
        limit: int = typer.Option(None, "--limit", help="Score only the first N videos of each folder.",
                                 callback=at_least(1)),
        overwrite: bool = typer.Option(False, "--overwrite", help="Rescore from scratch where --out holds scores "
                                       "made with another judge, model or prompt (a rerun otherwise refuses)."),
    ) -> None:
        """Score dreams with DreamGenBench (IF and/or PA) and print a model x split table.

        CSVs are appended per video: an interrupted run resumes where it stopped."""
        from dreamgen.io import check_output_location
        from dreamgenbench.bench import format_table, run_bench
        from dreamgenbench.scoring import set_seed

        check_output_location(out, "--out", {f"VIDEO_DIRS[{i}]": d for i, d in enumerate(video_dirs)})
        if judge == PIXEL_JUDGE and (do_pa or any(p.startswith(PIXEL_JUDGE) for p in pa_judge or [])):
            raise DreamgenError(f"the {PIXEL_JUDGE} judge scores instruction following only: drop --pa / --pa-judge")
        if not do_if and not do_pa:
            do_if, do_pa = True, judge != PIXEL_JUDGE
        set_seed(seed)
        dtype = {"bf16": "bfloat16", "fp32": "float32"}.get(precision, precision)
        opts = dict(device=device, dtype=dtype, base_url=base_url, api_key=api_key, timeout=timeout,
                    max_retries=max_retries, seed=seed, max_new_tokens=max_new_tokens)
        main = _judge(judge, model, **opts)
        pa_judges = []
        if do_pa:
            for spec in pa_judge or []:
                kind, _, name = spec.partition(":")
                pa_judges.append(main if (kind, name or None) == (judge, model) else _judge(kind, name or None, **opts))
            pa_judges = pa_judges or [main]
        cells = run_bench(video_dirs, out, main if do_if else None, pa_judges, zeroshot=zeroshot, limit=limit,
                          overwrite=overwrite)
        typer.echo(format_table(cells))
        typer.echo(f"results: {out}/summary.json, {out}/table.md")


def _register_filter(app: typer.Typer) -> None:
    @app.command("filter")
    def filter_cmd(
        scores: list[Path] = typer.Option(None, "--scores", help="IF score CSV(s) from bench (a CSV whose "
                                          "summary.json says task pa counts as PA)."),
        pa_scores: list[Path] = typer.Option(None, "--pa-scores", help="PA score CSV(s); averaged per video."),
        min_if: float = typer.Option(None, "--min-if", help="Keep dreams with IF >= this (default 1 when "
                                     "neither threshold is given).", callback=in_range(0, 1)),
        min_pa: float = typer.Option(None, "--min-pa", help="Also require mean PA >= this.",
                                     callback=in_range(0, 1)),
        out: Path = typer.Option(..., "--out", "-o", help="New folder for the kept dreams + manifest.json."),
        mode: str = typer.Option("copy", "--mode", help="copy, hardlink or symlink."),
    ) -> None:
        """Keep only dreams that pass DreamGenBench (drop "nightmares"), for the IDM stage."""
        from dreamgenbench.filtering import filter_dreams

        if not scores and not pa_scores:
            raise DreamgenError("give at least one score CSV (--scores / --pa-scores)")
        if min_if is None and min_pa is None:
            min_if, min_pa = (1, None) if scores else (None, 1)
        r = filter_dreams(scores or [], out, min_if=min_if, min_pa=min_pa, pa_scores=pa_scores or [], mode=mode)
        typer.echo(f"kept {r.n_kept}, rejected {r.n_rejected}, unscored {r.n_unscored} -> {r.out} "
                   f"(manifest.json lists every decision)")
