"""IDM labelling: frames -> actions (and states), one video or many at a time.

A flow IDM encodes every frame once; every frame t starts a window (frames t+offsets, clamped to the
last frame) whose predicted chunk covers actions t..t+H-1, and each frame's action is the mean of the
chunks covering it (the reference's temporal ensembling). `label_many` does this for several videos at
once: the frames of all of them are encoded in shared batches and their windows sampled in shared
batches, so a GPU sees full batches even for short videos; each video's sampling noise comes from its
own seeded generator, so a video gets the same labels alone or in a group. A state IDM runs once over
each whole video.
"""

from __future__ import annotations

import numpy as np
import torch


def ensemble_chunks(chunks: np.ndarray, length: int | None = None) -> np.ndarray:
    """chunks (T, H, A): chunk t predicts actions t..t+H-1 -> (T, A), each the mean of the chunks covering it."""
    n, h, a = chunks.shape
    length = n if length is None else length
    sums = np.zeros((length, a), np.float64)
    counts = np.zeros(length, np.int64)
    for t in range(n):
        end = min(t + h, length)
        if end > t:
            sums[t:end] += chunks[t, : end - t]
            counts[t:end] += 1
    if (counts == 0).any():
        raise ValueError(f"frames {np.flatnonzero(counts == 0)[:5].tolist()} are covered by no chunk")
    return (sums / counts[:, None]).astype(np.float32)



def device_and_autocast(device: str, precision: str):
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    use_bf16 = precision == "bf16" or (precision == "auto" and dev.type == "cuda")

    def autocast():
        return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16)
    return dev, autocast


@torch.no_grad()
def label_frames(model, embodiment, frames: np.ndarray, batch_size: int = 64, num_steps: int | None = None,
                 seed: int = 0, device: torch.device | str = "cpu", autocast=None) -> np.ndarray:
    """uint8 frames (T, H, W, 3) -> raw (unnormalised) actions (T, A) by ensembling every frame's chunk."""
    return label_many(model, embodiment, [frames], batch_size, num_steps, seed, device, autocast)[0]


def _video_noise(model, n: int, seed: int) -> torch.Tensor:
    """The starting noise of a video's n chunks, from its own generator (independent of batching)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((n, model.config.action_horizon, model.config.action_dim), generator=gen)


@torch.no_grad()
def label_many(model, embodiment, videos: list[np.ndarray], batch_size: int = 64, num_steps: int | None = None,
               seed: int = 0, device: torch.device | str = "cpu", autocast=None) -> list[np.ndarray]:
    """A flow IDM over several videos at once -> raw actions (T_i, A) per video."""
    from dreamgen.idm.data import resize_frames, window_indices

    cfg = model.config
    device = torch.device(device)
    autocast = autocast or (lambda: torch.autocast(device.type, enabled=False))
    lengths = [len(v) for v in videos]
    frames = np.concatenate([resize_frames(v, cfg.image_size) for v in videos])
    with autocast():  # every frame of every video encoded once, in full batches
        tokens = torch.cat([model.encode_frames(torch.from_numpy(frames[i:i + batch_size]).to(device))
                            for i in range(0, len(frames), batch_size)])
    offsets = np.cumsum([0] + lengths[:-1])
    windows = np.concatenate([window_indices(t, n, cfg.observation_offsets, cfg.action_horizon)[0][None] + off
                              for n, off in zip(lengths, offsets, strict=True) for t in range(n)])
    noise = torch.cat([_video_noise(model, n, seed) for n in lengths])
    chunks = []
    for start in range(0, len(windows), batch_size):
        idx = torch.as_tensor(windows[start:start + batch_size], device=tokens.device)
        with autocast():
            context = model.mix(tokens[idx])
            chunks.append(model.sample(context=context, num_steps=num_steps,
                                       noise=noise[start:start + batch_size]).cpu().numpy())
    chunks = np.concatenate(chunks)  # (sum T, H, A) normalised
    raw = embodiment.unnormalize_action(chunks.reshape(-1, chunks.shape[-1])).reshape(chunks.shape)
    return [ensemble_chunks(raw[off:off + n], n) for n, off in zip(lengths, offsets, strict=True)]


@torch.no_grad()
def label_states(model, embodiment, frames: np.ndarray, device: torch.device | str = "cpu",
                 autocast=None) -> tuple[np.ndarray, np.ndarray | None]:
    """A state IDM over a whole video, uint8 (T, H, W, 3) -> raw (actions (T, A), states (T, S) or None)."""
    from dreamgen.idm.data import resize_frames
    from dreamgen.idm.derive import actions_from_states

    device = torch.device(device)
    autocast = autocast or (lambda: torch.autocast(device.type, enabled=False))
    x = torch.from_numpy(resize_frames(frames, model.config.image_size)).to(device)[None]
    with autocast():
        state, action = model.predict(x)
    actions = embodiment.unnormalize_action(action[0].float().cpu().numpy())
    if state is None:
        return actions, None
    states = embodiment.unnormalize_state(state[0].float().cpu().numpy())
    if embodiment.action_from_state:
        actions = actions_from_states(states, embodiment.action_from_state, direct=actions)
    return actions, states


def label_video(model, embodiment, frames: np.ndarray, batch_size: int = 64, num_steps: int | None = None,
                seed: int = 0, device: torch.device | str = "cpu", autocast=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Raw (actions (T, A), states (T, S) or None) for one video, whichever kind the IDM is."""
    if model.config.kind == "state":
        return label_states(model, embodiment, frames, device, autocast)
    return label_frames(model, embodiment, frames, batch_size, num_steps, seed, device, autocast), None


def labelling_provenance(model, embodiment) -> dict[str, str]:
    """How the dataset's `observation.state` and `action` were obtained, for provenance files."""
    from dreamgen.idm.derive import describe

    if model.config.kind != "state":
        return {"action": "IDM flow-matching action chunks, overlapping chunks averaged per frame",
                "observation.state": "not written (the IDM does not estimate state)"}
    if not model.config.state_dim:
        return {"action": "IDM action head, per frame", "observation.state": "not written (no state head)"}
    derived = describe(embodiment.action_from_state)
    return {"observation.state": "IDM state head: the state estimated in every frame",
            "action": (f"derived from the estimated states: {derived}; other dimensions from the IDM action head"
                       if derived else "IDM action head, per frame")}
