"""A world-model training run on disk: resumable checkpoints and the loss log.

    checkpoints/step_XXXXXXX_<stage>/  state.json (step, stage, latent statistics), trainable.safetensors
                                       (transformer weights that train), vae.safetensors (scratch),
                                       optimizer.pt
    loss.csv, loss.png                 one row every `log_every` steps, both stages

Each checkpoint is written to a `.partial` folder and renamed into place; only the newest
`keep_checkpoints` are kept.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from dreamgen.errors import DreamgenError
from dreamgen.worldmodel.backbone import Backbone

log = logging.getLogger(__name__)


def log_loss(rows: list, step: int, stage: str, loss: torch.Tensor, opt, t0: float, every: int, total: int) -> None:
    value = float(loss.detach())
    if not math.isfinite(value):
        raise DreamgenError(f"{stage} loss became {value} at step {step}; lower the learning rate")
    if step % max(1, every) == 0 or step == total or step == 1:
        rows.append({"step": step, "stage": stage, "loss": value, "lr": opt.param_groups[0]["lr"],
                     "seconds": round(time.time() - t0, 2)})
        log.debug("%s step %d loss %.4f", stage, step, value)


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with path.open() as f:
        return [{"step": int(r["step"]), "stage": r["stage"], "loss": float(r["loss"]), "lr": float(r["lr"]),
                 "seconds": float(r["seconds"])} for r in csv.DictReader(f)]


def write_loss(out: Path, rows: list[dict[str, Any]]) -> None:
    tmp = out / ".loss.csv.partial"
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["step", "stage", "loss", "lr", "seconds"])
        w.writeheader()
        w.writerows(rows)
    tmp.replace(out / "loss.csv")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        for stage in dict.fromkeys(r["stage"] for r in rows):
            pts = [(r["step"], r["loss"]) for r in rows if r["stage"] == stage]
            ax.plot(*zip(*pts, strict=True), label=stage)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_yscale("log")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "loss.png", dpi=100)
        plt.close(fig)
    except Exception as exc:  # a plot is a convenience: never fail a finished training for it
        log.warning("could not draw loss.png (%s)", exc)


def _trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in module.named_parameters() if p.requires_grad}


def load_trainable(module: torch.nn.Module, path: Path) -> None:
    tensors = load_file(str(path))
    params = dict(module.named_parameters())
    missing = [n for n in tensors if n not in params]
    if missing:
        raise DreamgenError(f"{path}: checkpoint has weights this model lacks ({missing[:3]}...)")
    with torch.no_grad():
        for n, t in tensors.items():
            params[n].copy_(t)


def save_checkpoint(accelerator, root: Path, step: int, stage: str, backbone: Backbone, opt, transformer,
                    rows, keep: int, vae_too: bool = False, stats_videos=None) -> None:
    if not accelerator.is_main_process:
        return
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:07d}_{stage}"
    tmp = root / f".{final.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    state: dict[str, Any] = {"step": step, "stage": "transformer" if stage == "transformer" else "vae"}
    if stage == "vae_done":
        state["stage"] = "transformer"
        state["step"] = 0
    if transformer is not None:
        save_file(_trainable_state(accelerator.unwrap_model(transformer)), str(tmp / "trainable.safetensors"))
    if vae_too:
        vae = accelerator.unwrap_model(backbone.vae)
        save_file({k: v.detach().cpu().contiguous() for k, v in vae.state_dict().items()},
                  str(tmp / "vae.safetensors"))
    if stats_videos is not None:
        backbone.set_latent_stats(stats_videos)
    state["latents_mean"] = list(backbone.vae.config.latents_mean)
    state["latents_std"] = list(backbone.vae.config.latents_std)
    if opt is not None:
        torch.save(opt.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(state))
    tmp.rename(final)
    write_loss(root.parent, rows)
    done = sorted((p for p in root.glob("step_*") if (p / "state.json").is_file()), key=_checkpoint_order)
    for old in done[:-max(1, keep)]:
        shutil.rmtree(old, ignore_errors=True)


def _checkpoint_order(path: Path) -> tuple[bool, int]:
    state = json.loads((path / "state.json").read_text())
    return state["stage"] == "transformer", state["step"]


def latest_checkpoint(root: Path) -> dict[str, Any] | None:
    if not root.is_dir():
        return None
    done = sorted((p for p in root.glob("step_*") if (p / "state.json").is_file()), key=_checkpoint_order)
    if not done:
        return None
    state = json.loads((done[-1] / "state.json").read_text())
    state["path"] = str(done[-1])
    return state
