"""Phase 1 of a from-scratch world model (`finetune_world_model` with `--init scratch`): train the Wan
autoencoder, then measure its per-channel latent mean/std on the data (stored in the VAE config).

Loss (`_VAELoss`): L1 + L2 reconstruction of [-1, 1] pixels with foreground pixels up-weighted
(`train.vae_fg_weight`, see foreground.py) plus a small KL term. Clips are whole (`vae_clip_frames`
None) unless the preset asks for sub-clips: the Wan autoencoder is *causal* in time (each chunk reads a
cache of the frames before it), so one trained on 9-frame sub-clips drifts and collapses on longer clips.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from dreamgen.worldmodel.checkpoints import latest_checkpoint, log_loss
from dreamgen.worldmodel.foreground import weighted_recon_loss

log = logging.getLogger(__name__)


class _VAELoss(torch.nn.Module):
    """The autoencoder's loss as a forward pass, so DDP (which syncs gradients on forward) can wrap it."""

    def __init__(self, vae: torch.nn.Module, fg_weight: float = 0.0):
        super().__init__()
        self.vae = vae
        self.fg_weight = float(fg_weight)

    def forward(self, video: torch.Tensor, kl_weight: float) -> torch.Tensor:
        x = video.permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0
        dist = self.vae.encode(x).latent_dist
        recon = self.vae.decode(dist.sample()).sample
        return weighted_recon_loss(recon.float(), x, self.fg_weight) + kl_weight * dist.kl().mean()


def vae_train_step(run: Any, vae_model: Any, opt: Any) -> torch.Tensor:
    train = run.preset.train
    video, _ = run.clips.sample(run.rng, int(train.vae_batch_size or train.batch_size))
    k = min(int(train.vae_clip_frames or video.shape[1]), video.shape[1])
    t0_clip = int(run.rng.integers(video.shape[1] - k + 1))
    video = video[:, t0_clip:t0_clip + k]
    acc = run.accelerator
    with acc.accumulate(vae_model):
        with acc.autocast():
            loss = vae_model(video.to(acc.device), float(train.vae_kl_weight))
        acc.backward(loss)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return loss


def _restore(run: Any, state: dict[str, Any] | None, vae_steps: int) -> int:
    """Load the checkpoint's autoencoder and latent statistics; returns the autoencoder step to go on from."""
    pipe = run.backbone.pipe
    if not (state and (state["stage"] == "transformer" or vae_steps)):
        return 0
    vae_path = Path(state["path"]) / "vae.safetensors"
    if vae_path.is_file():
        pipe.vae.load_state_dict(load_file(str(vae_path)))
    if state.get("latents_mean"):
        pipe.vae.register_to_config(latents_mean=state["latents_mean"], latents_std=state["latents_std"])
    return state["step"] if state["stage"] == "vae" else vae_steps


def train_autoencoder(run: Any, state: dict[str, Any] | None) -> dict[str, Any] | None:
    """Train the VAE from scratch (or restore it and its latent statistics from the checkpoint); returns the
    checkpoint state to continue from. `cfg.vae_minutes` ends the phase early (the schedule is constant)."""
    cfg, pipe, acc, train = run.cfg, run.backbone.pipe, run.accelerator, run.preset.train
    vae_steps = int(train.vae_steps) if cfg.init == "scratch" else 0
    vae_start = _restore(run, state, vae_steps)
    if vae_start >= vae_steps:
        return state
    vae = pipe.vae
    vae.requires_grad_(True).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=float(train.vae_lr), weight_decay=0.0)
    if state and state["stage"] == "vae":
        opt.load_state_dict(torch.load(Path(state["path"]) / "optimizer.pt", weights_only=True))
    vae_model, opt = acc.prepare(_VAELoss(vae, float(train.vae_fg_weight)), opt)
    t0 = time.time()
    done = vae_start
    for step in progress(range(vae_start, vae_steps), vae_steps, vae_start, "autoencoder", acc.is_main_process):
        loss = vae_train_step(run, vae_model, opt)
        done = step + 1
        log_loss(run.log_rows, done, "vae", loss, opt, t0, cfg.log_every, vae_steps)
        if out_of_time(t0, cfg.vae_minutes, "autoencoder", done, vae_steps):
            break
        if cfg.save_every and done % cfg.save_every == 0 and done < vae_steps:
            run.save(done, "vae", opt, None, vae_too=True)
    vae = acc.unwrap_model(vae_model).vae
    vae.requires_grad_(False).eval()
    pipe.register_modules(vae=vae)
    del opt, vae_model
    if acc.is_main_process:
        run.save(done, "vae_done", None, None, vae_too=True,
                 stats_videos=[run.clips.sample(run.rng, 1)[0] for _ in range(int(train.vae_stats_clips))])
    acc.wait_for_everyone()
    state = latest_checkpoint(run.ckpt_root)
    pipe.vae.register_to_config(latents_mean=state["latents_mean"], latents_std=state["latents_std"])
    return state


def out_of_time(t0: float, minutes: float | None, phase: str, step: int, total: int) -> bool:
    """True once `minutes` of wall time have passed since t0 (None: never), logging where the phase stopped."""
    if minutes is None or time.time() - t0 < 60.0 * float(minutes) or step >= total:
        return False
    log.warning("%s: time budget of %.1f min used up at step %d of %d; moving on", phase, minutes, step, total)
    return True


def progress(it, total: int, start: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(it, total=total, initial=start, desc=desc, disable=not enabled, dynamic_ncols=True,
                mininterval=5.0)
