"""The experiment's results: the report page (dreams, curves, metrics), success tables, the scaling plot.

Everything here reads what the steps left under the run folder; nothing is trained or evaluated.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from dreamgen.experiment.config import STEPS, PipelineConfig
from dreamgen.experiment.report import (
    DreamEntry,
    Report,
    SuccessRow,
    contact_sheet,
    plot_loss_csv,
    write_report,
)
from dreamgen.io import atomic_write_text
from dreamgen.naming import parse_dream_path


def dream_folder(out: Path, name: str) -> Path:
    """Where the runner's dreams step writes dream set `name` of the run folder `out`."""
    return out / "dreams" / name


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def write_experiment_report(cfg: PipelineConfig, out: Path, timings: dict[str, float]) -> Path:
    """report.html / report.md and results.json of the run folder; returns the page."""
    rep = Report(title=f"DreamGen on ToyWorld — {cfg.name}",
                 intro="Real demos of one behavior in one environment, a world model fine-tuned on them, dreams "
                       "of new behaviors and environments from new first frames, an IDM trained on the real demos "
                       "labelling the dreams, and policies trained with and without those neural trajectories.")
    for step in STEPS[:-1]:
        if step in timings:
            rep.steps.append((step, f"{timings[step]:.0f} s -> {out / step}"
                              if (out / step).exists() else f"{timings[step]:.0f} s"))
    scores = read_scores(out)
    sheets = out / "report_assets" / "sheets"
    for d in cfg.dreams:
        for video in sorted(dream_folder(out, d.name).glob("*.mp4"), key=lambda p: int(p.stem.split("_")[0]))[:6]:
            _, instruction = parse_dream_path(video)
            png = contact_sheet(video, sheets / d.name / f"{video.stem}.png")
            s = scores.get(str(video.resolve()))
            rep.dreams.append(DreamEntry(video, f"[{d.name}] {instruction}", png,
                                         {"sim-replay": s} if s is not None else {},
                                         kept=None if s is None else s == "1"))
    curves = out / "report_assets" / "curves"
    for caption, csv_path in loss_csvs(out):
        png = curves / f"{csv_path.parent.name}_{csv_path.stem}.png"
        rep.curves.append((caption, plot_loss_csv(csv_path, png, caption)))
    idm_eval = _read_json(out / "idm" / "eval.json")
    if idm_eval:
        rep.metrics.append(("IDM held-out action MSE (normalised)", f"{idm_eval['idm_mse']:.4f}"))
        rep.metrics.append(("predict-the-mean MSE (normalised)", f"{idm_eval['baseline_mse']:.4f}"))
        r = idm_eval.get("replay") or {}
        if r:
            rep.metrics.append((f"open-loop replay success of IDM labels ({r['episodes']} held-out demos)",
                                f"{r['idm_replay_success']:.0%} (expert actions: {r['expert_replay_success']:.0%})"))
    for d in cfg.dreams:
        summary = _read_json(out / "scores" / f"{d.name}.summary.json")
        if summary:
            rep.metrics.append((f"dreams passing the sim-replay judge: {d.name}",
                                f"{summary.get('score', float('nan')):.2f} of {summary.get('n')}"))
    rep.policies = policy_data(out)
    rep.rollouts = rollout_videos(out)
    table = success_rows(out)
    rep.success = [SuccessRow(**r) for r in table]
    rep.notes.append("sim-replay judge: the IDM labels a dream, the labels are replayed open-loop in ToyWorld from "
                     "the dream's own initial state, and the task's success predicate decides (a ToyWorld-only "
                     "stand-in for a VLM judge, reported as such).")
    atomic_write_text(out / "results.json", json.dumps({"success": table, "idm": idm_eval, "timings": timings},
                                                       indent=2, default=str))
    if cfg.scaling:
        rep.curves.append(("success vs. neural trajectories", scaling_plot(cfg, out, success_rows(out, per_seed=True))))
    html_path, _ = write_report(rep, out)
    return html_path


def policy_data(out: Path) -> list[tuple[str, str]]:
    """Per policy run, what it trained on: the real demos and which neural set (raw or filtered dreams)."""
    rows = []
    for run in sorted((out / "policies").glob("*/dreamgen_train.json")):
        parts = []
        for spec in (_read_json(run) or {}).get("datasets", []):
            path = Path(spec["path"])
            if path.parent.name == "neural" and path.name.rsplit("_", 1)[-1] in ("raw", "filtered"):
                name, kind = path.name.rsplit("_", 1)
                parts.append(f"neural {kind} ({name}, weight {spec['weight']:.2f})")
            elif path.parent.name == "neural_subsets":
                parts.append(f"neural, first {path.name.removeprefix('n')} trajectories (weight {spec['weight']:.2f})")
            else:
                parts.append(f"real ({path.name})")
        rows.append((run.parent.name, " + ".join(parts) or "unknown"))
    return rows


def rollout_videos(out: Path, limit: int = 12) -> list[tuple[str, Path]]:
    """One saved closed-loop rollout per policy run and task cell (eval/<run>/<cell>/rollouts/*.mp4)."""
    found = []
    for cell in sorted((out / "eval").glob("*/*/rollouts")):
        first = next(iter(sorted(cell.glob("*.mp4"))), None)
        if first is not None:
            outcome = "success" if first.stem.endswith("_success") else "failure" if first.stem.endswith("_fail") else ""
            found.append((f"{cell.parent.parent.name}: {cell.parent.name.replace('__', ' in ')} {outcome}".strip(),
                          first))
    return found[:limit]


def read_scores(out: Path) -> dict[str, str]:
    """The judge's verdict per dream video (resolved path) from every scores/*.csv."""
    scores = {}
    for path in (out / "scores").glob("*.csv"):
        with path.open() as f:
            for row in csv.DictReader(f):
                scores[str(Path(row["video_path"]).resolve())] = row["prediction"]
    return scores


def loss_csvs(out: Path) -> list[tuple[str, Path]]:
    """(caption, CSV with a step column and *loss* columns) for every training that ran."""
    found = [(caption, out / rel) for caption, rel in
             (("world model: prior (VAE, then transformer)", "wm_prior/loss.csv"),
              ("world model: on the real demos", "wm/loss.csv")) if (out / rel).is_file()]
    curves = out / "report_assets" / "curves"
    series: dict[str, dict[int, dict[str, float]]] = {}
    states = sorted((out / "idm").glob("checkpoint-*/train_state.json"),
                    key=lambda p: int(p.parent.name.split("-")[-1]))
    if states:
        rows = series.setdefault("IDM (train and held-out loss)", {})
        for h in json.loads(states[-1].read_text()).get("history", []):
            for key in ("loss", "val_loss"):
                if key in h:
                    rows.setdefault(int(h["step"]), {})[key] = float(h[key])
    for log_path in sorted((out / "policies").glob("*/train_log.jsonl")):
        rows = series.setdefault("policies (training loss)", {})
        for line in log_path.read_text().splitlines():
            rec = json.loads(line)
            if "loss" in rec:
                rows.setdefault(int(rec["step"]), {})[f"loss {log_path.parent.name}"] = float(rec["loss"])
    for caption, rows in series.items():
        if not rows:
            continue
        cols = sorted({c for r in rows.values() for c in r})
        path = curves / f"{caption.split(' ')[0].lower()}_loss.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", *cols])
            for step in sorted(rows):
                w.writerow([step, *(rows[step].get(c, "") for c in cols)])
        found.append((caption, path))
    return found


def success_rows(out: Path, per_seed: bool = False) -> list[dict[str, Any]]:
    """Successes per (policy, behavior, env), seeds pooled; `per_seed`: per run (policy named `<name>_s<seed>`)."""
    rows: dict[tuple[str, str, str], list[int]] = {}
    for res in sorted((out / "eval").glob("*/*/results.json")):
        run = res.parent.parent.name
        policy = run if per_seed else run.rsplit("_s", 1)[0]
        data = json.loads(res.read_text())
        for cell in data.get("results", []):
            key = (policy, cell["behavior"], cell["env"])
            acc = rows.setdefault(key, [0, 0])
            acc[0] += int(cell["successes"])
            acc[1] += int(cell["episodes"])
    return [{"policy": p, "behavior": b, "env": e, "successes": s, "episodes": n}
            for (p, b, e), (s, n) in rows.items()]


def scaling_plot(cfg: PipelineConfig, out: Path, table: list[dict[str, Any]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dreamgen.intervals import wilson_interval

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    seed0 = cfg.policy.seeds[0]
    train_b, train_e = cfg.real.behaviors[0], cfg.real.envs[0]
    for label, pred in (("training cell", lambda r: (r["behavior"], r["env"]) == (train_b, train_e)),
                        ("new behaviors / envs", lambda r: (r["behavior"], r["env"]) != (train_b, train_e))):
        xs, ys, lo, hi = [], [], [], []
        for n in cfg.scaling:
            name = "real_only" if n == 0 and "real_only" in cfg.policy.variants else f"scale_{n}"
            rs = [r for r in table if r["policy"] == f"{name}_s{seed0}" and pred(r)]
            s, tot = sum(r["successes"] for r in rs), sum(r["episodes"] for r in rs)
            if tot:
                a, b = wilson_interval(s, tot)
                xs.append(n), ys.append(s / tot), lo.append(s / tot - a), hi.append(b - s / tot)
        if xs:
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=label)
    ax.set_xscale("symlog", linthresh=50)
    ax.set_xlabel("neural trajectories")
    ax.set_ylabel("success rate")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "report_assets" / "curves" / "scaling.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
