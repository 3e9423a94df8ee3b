"""IDM quality: labelled actions vs. ground truth on held-out episodes, against predicting the mean.

Errors are measured in the embodiment's normalised action space ([-1, 1] per dimension by q01/q99),
so dimensions of different units weigh alike. The labels are made exactly as `idm-extract` makes
them (every frame, overlapping chunks averaged).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dreamgen.errors import DreamgenError

log = logging.getLogger(__name__)


@dataclass
class EvalConfig:
    checkpoint: str | Path
    dataset_path: str | Path | None = None  # default: the dataset the IDM was trained on
    episodes: list[int] | None = None  # default: the checkpoint's held-out episodes (all, for another dataset)
    batch_size: int = 64
    device: str = "auto"
    precision: str = "auto"
    num_inference_steps: int | None = None
    seed: int = 0


def evaluate_idm(cfg: EvalConfig, episodes=None) -> dict[str, Any]:
    """Returns {idm_mse, baseline_mse, idm_mae, baseline_mae, mse_ratio, per_dim_mse, frames, episodes}.

    `episodes` may pass IDMEpisode objects directly (synthetic data); else they are read from the dataset.
    """
    from dreamgen.idm.checkpoint import load_idm
    from dreamgen.idm.data import load_dataset_episodes
    from dreamgen.idm.extract import device_and_autocast, label_video

    device, autocast = device_and_autocast(cfg.device, cfg.precision)
    model, emb, state = load_idm(cfg.checkpoint, device)
    if episodes is None:
        path = cfg.dataset_path or state.get("dataset_path")
        if not path:
            raise DreamgenError(f"{cfg.checkpoint}: no dataset given and the checkpoint names none")
        ids = cfg.episodes
        if ids is None:
            same = cfg.dataset_path is None or Path(cfg.dataset_path).resolve() == Path(
                state.get("dataset_path") or "").resolve()
            ids = state.get("val_episodes") if same else None
            if same and not ids:
                raise DreamgenError(f"{cfg.checkpoint}: trained without held-out episodes; pass --episodes")
        episodes = load_dataset_episodes(path, emb.video_key, model.config.image_size, episodes=ids)
    if not episodes:
        raise DreamgenError("no episodes to evaluate")
    mean = np.asarray(emb.stats[emb.action_key]["mean"], np.float32)
    sq_idm, sq_base, ab_idm, ab_base, n = 0.0, 0.0, 0.0, 0.0, 0
    per_dim = np.zeros(model.config.action_dim)
    state_err: list[np.ndarray] = []
    grip_dims = [d for r in emb.action_from_state if r.kind == "sign_of_change" for d in range(*r.action)]
    grip_hits, grip_n = 0, 0
    for ep in episodes:
        frames = ep.frames if ep.frames is not None else ep.get_frames(range(ep.length))
        if len(frames) < model.config.window:
            log.warning("episode %d: %d frames, shorter than the IDM window; skipped", ep.index, len(frames))
            continue
        pred, states = label_video(model, emb, frames, cfg.batch_size, cfg.num_inference_steps, cfg.seed, device,
                                   autocast)
        if states is not None and ep.state is not None:
            n_s = min(len(states), len(ep.state))
            state_err.append(np.abs(states[:n_s] - ep.state[:n_s]))
        gt = emb.normalize_action(ep.action)
        p = emb.normalize_action(pred)
        b = np.broadcast_to(emb.normalize_action(mean[None]), gt.shape)
        sq_idm += float(((p - gt) ** 2).sum())
        sq_base += float(((b - gt) ** 2).sum())
        ab_idm += float(np.abs(p - gt).sum())
        ab_base += float(np.abs(b - gt).sum())
        per_dim += ((p - gt) ** 2).sum(0)
        n += len(gt)
        if grip_dims:  # gripper commands: does the label's sign agree with the real command's?
            grip_hits += int((np.sign(pred[:, grip_dims]) == np.sign(ep.action[:, grip_dims])).sum())
            grip_n += len(gt) * len(grip_dims)
    if n == 0:
        raise DreamgenError("no episode is long enough to evaluate")
    d = model.config.action_dim
    res = {
        "idm_mse": sq_idm / (n * d), "baseline_mse": sq_base / (n * d),
        "idm_mae": ab_idm / (n * d), "baseline_mae": ab_base / (n * d),
        "per_dim_mse": (per_dim / n).tolist(), "frames": n, "episodes": len(episodes),
    }
    res["mse_ratio"] = res["idm_mse"] / max(res["baseline_mse"], 1e-12)
    if grip_n:
        res["grip_accuracy"] = grip_hits / grip_n
    if state_err:  # per-dimension mean absolute state error, raw units (ToyWorld: metres and closure)
        err = np.concatenate(state_err)
        res["state_mae"] = err.mean(0).tolist()
        res["state_p95"] = np.quantile(err, 0.95, axis=0).tolist()
    return res


def replay_success(checkpoint: str | Path, dataset_path: str | Path, episodes: list[int] | None = None,
                   device: str = "auto", num_inference_steps: int | None = None, seed: int = 0) -> dict[str, Any]:
    """ToyWorld only: label held-out expert episodes with the IDM, execute the labels open-loop from each
    episode's initial state (its recorded seed), and check the task predicate. The expert's own actions
    are replayed too, as the ceiling (ToyWorld is deterministic given the seed)."""
    import json

    from dreamgen.idm.checkpoint import load_idm
    from dreamgen.idm.data import load_dataset_episodes
    from dreamgen.idm.extract import device_and_autocast, label_video
    from dreamgen.toyworld.replay import replay_actions

    dev, autocast = device_and_autocast(device, "auto")
    model, emb, state = load_idm(checkpoint, dev)
    prov_path = Path(dataset_path) / "meta" / "dreamgen_provenance.json"
    if not prov_path.is_file():
        raise DreamgenError(f"{prov_path}: not found; replay needs a `dreamgen toyworld collect` dataset")
    prov = {e["episode_index"]: e for e in json.loads(prov_path.read_text())["episodes"]}
    ids = episodes
    if ids is None:  # the held-out episodes of the training dataset; every episode of another dataset
        same = Path(dataset_path).resolve() == Path(state.get("dataset_path") or "").resolve()
        ids = (state.get("val_episodes") or None) if same else None
    eps = load_dataset_episodes(dataset_path, emb.video_key, model.config.image_size, episodes=ids)
    idm_ok = expert_ok = 0
    for ep in eps:
        info = prov[ep.index]
        pred, _ = label_video(model, emb, ep.frames, 64, num_inference_steps, seed, dev, autocast)
        idm_ok += replay_actions(pred, info["behavior"], info["env"], info["seed"])
        expert_ok += replay_actions(ep.action, info["behavior"], info["env"], info["seed"])
    from dreamgen.intervals import wilson_interval

    n = len(eps)
    return {"episodes": n, "idm_replay_success": idm_ok / max(n, 1),
            "idm_replay_ci95": list(wilson_interval(idm_ok, n)) if n else None,
            "expert_replay_success": expert_ok / max(n, 1)}
