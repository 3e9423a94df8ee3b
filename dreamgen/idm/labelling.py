"""IDM labelling: frames -> actions (and states), one video or many at a time.

A flow IDM encodes every frame once; every `stride`-th frame t starts a window (frames t+offsets, clamped
to the last frame) whose predicted chunk covers actions t..t+H-1, and each frame's action is the mean of
the chunks covering it (the reference's temporal ensembling at stride 1). The cost per labelled frame is
explicit: one image encoding plus 1/stride of (one context mix + `num_steps` velocity evaluations of the
action DiT); each frame is the mean of H/stride chunks (stride 1: H, the reference's; stride H: one chunk,
no ensemble). `stride` must be between 1 and H so that every frame is covered. `label_many` does this for several videos at
once: the frames of all of them are encoded in shared batches and their windows sampled in shared
batches, so a GPU sees full batches even for short videos; each video's sampling noise comes from its
own seeded generator, so a video gets the same labels alone or in a group. A state IDM runs once over
each whole video.
"""

from __future__ import annotations

import numpy as np
import torch


def ensemble_chunks(chunks: np.ndarray, length: int | None = None, starts: np.ndarray | None = None) -> np.ndarray:
    """chunks (N, H, A), chunk i predicting actions starts[i]..starts[i]+H-1 (default starts: 0..N-1)
    -> (length, A), each frame the mean of the chunks covering it."""
    n, h, a = chunks.shape
    starts = np.arange(n) if starts is None else np.asarray(starts)
    length = n if length is None else length
    sums = np.zeros((length, a), np.float64)
    counts = np.zeros(length, np.int64)
    for i, t in enumerate(starts):
        end = min(t + h, length)
        if end > t:
            sums[t:end] += chunks[i, : end - t]
            counts[t:end] += 1
    if (counts == 0).any():
        raise ValueError(f"frames {np.flatnonzero(counts == 0)[:5].tolist()} are covered by no chunk")
    return (sums / counts[:, None]).astype(np.float32)


def compile_for_labelling(model, backend: str = "inductor", mode: str | None = None) -> None:
    """torch.compile the three calls of labelling: the per-frame encoding (preprocess + image encoder +
    projection), the context mix and the action DiT's velocity field (inference, fixed shapes: `label_many`
    pads its last batches to full size so one graph serves every call). The compiled methods shadow the
    model's own on this instance only: its modules and state dict are untouched. With mode="reduce-overhead"
    (CUDA graphs) a call's outputs are overwritten by the next call; `label_many` copies what it keeps."""
    for name in ("encode_frames", "mix", "velocity"):
        setattr(model, name, torch.compile(getattr(model, name), dynamic=False, backend=backend, mode=mode))
    model.compiled_for_labelling = True


def _batches(x: torch.Tensor, size: int, pad: bool):
    """Consecutive slices of `size`; with `pad` the last one is padded (repeating its last row) to `size`,
    returning (slice, number of real rows)."""
    for i in range(0, len(x), size):
        part = x[i:i + size]
        n = len(part)
        if pad and n < size:
            part = torch.cat([part, part[-1:].expand(size - n, *part.shape[1:])])
        yield part, n


def device_and_autocast(device: str, precision: str):
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    use_bf16 = precision == "bf16" or (precision == "auto" and dev.type == "cuda")

    def autocast():
        return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16)
    return dev, autocast


@torch.no_grad()
def label_frames(model, embodiment, frames: np.ndarray, batch_size: int = 64, num_steps: int | None = None,
                 seed: int = 0, device: torch.device | str = "cpu", autocast=None, stride: int = 1) -> np.ndarray:
    """uint8 frames (T, H, W, 3) -> raw (unnormalised) actions (T, A) by ensembling the windows' chunks."""
    return label_many(model, embodiment, [frames], batch_size, num_steps, seed, device, autocast, stride)[0]


def _frames_tensor(videos: list[np.ndarray], size, pin: bool) -> torch.Tensor:
    """All videos' frames resized to the encoder's size, concatenated into one uint8 tensor (in pinned memory
    when `pin`, so that batches go to the GPU with non-blocking copies)."""
    from dreamgen.idm.data import resize_frames

    parts = [torch.from_numpy(resize_frames(v, size)) for v in videos]
    out = torch.empty((sum(len(x) for x in parts), *parts[0].shape[1:]), dtype=torch.uint8, pin_memory=pin)
    return torch.cat(parts, out=out)


def _encode_all(model, frames: torch.Tensor, batch_size: int, pad: bool, device: torch.device) -> torch.Tensor:
    """uint8 frames (N, H, W, 3) -> tokens (N, P, hidden), each batch's real rows copied out of the encoder's
    output before the next call (a CUDA graph's next replay overwrites it)."""
    tokens = None
    for i, (part, n) in enumerate(_batches(frames, batch_size, pad)):
        out = model.encode_frames(part.to(device, non_blocking=True))
        if tokens is None:
            tokens = out.new_empty((len(frames), *out.shape[1:]))
        tokens[i * batch_size:i * batch_size + n] = out[:n]
    return tokens


def _video_noise(model, n: int, seed: int) -> torch.Tensor:
    """The starting noise of a video's n chunks, from its own generator (independent of batching)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((n, model.config.action_horizon, model.config.action_dim), generator=gen)


def check_stride(stride: int, horizon: int) -> None:
    from dreamgen.errors import BadFlagError

    if not (isinstance(stride, int) and 1 <= stride <= horizon):
        raise BadFlagError(f"--stride must be between 1 and the IDM's action horizon ({horizon}), got {stride}")


@torch.no_grad()
def label_many(model, embodiment, videos: list[np.ndarray], batch_size: int = 64, num_steps: int | None = None,
               seed: int = 0, device: torch.device | str = "cpu", autocast=None, stride: int = 1) -> list[np.ndarray]:
    """A flow IDM over several videos at once -> raw actions (T_i, A) per video."""
    from dreamgen.idm.data import window_indices

    cfg = model.config
    check_stride(stride, cfg.action_horizon)
    device = torch.device(device)
    autocast = autocast or (lambda: torch.autocast(device.type, enabled=False))
    pad = bool(getattr(model, "compiled_for_labelling", False))
    lengths = [len(v) for v in videos]
    frames = _frames_tensor(videos, cfg.image_size, pin=device.type == "cuda")
    with autocast():  # every frame of every video encoded once, in full batches
        tokens = _encode_all(model, frames, batch_size, pad, device)
    offsets = np.cumsum([0] + lengths[:-1])
    starts = [np.arange(0, n, stride) for n in lengths]
    windows = np.concatenate([window_indices(t, n, cfg.observation_offsets, cfg.action_horizon)[0][None] + off
                              for n, off, st in zip(lengths, offsets, starts, strict=True) for t in st])
    noise = torch.cat([_video_noise(model, len(st), seed) for st in starts])
    chunks = []
    for (idx, n), (eps, _) in zip(_batches(torch.as_tensor(windows, device=tokens.device), batch_size, pad),
                                  _batches(noise, batch_size, pad), strict=True):
        with autocast():
            context = model.mix(tokens[idx])
            if pad:  # compiled: a CUDA graph's output, which the velocity calls' replays would overwrite
                context = context.clone()
            chunks.append(model.sample(context=context, num_steps=num_steps, noise=eps).cpu().numpy()[:n])
    chunks = np.concatenate(chunks)  # (sum of windows, H, A) normalised
    raw = embodiment.unnormalize_action(chunks.reshape(-1, chunks.shape[-1])).reshape(chunks.shape)
    firsts = np.cumsum([0] + [len(st) for st in starts])
    return [ensemble_chunks(raw[firsts[i]:firsts[i + 1]], n, starts[i]) for i, n in enumerate(lengths)]


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
                seed: int = 0, device: torch.device | str = "cpu", autocast=None,
                stride: int = 1) -> tuple[np.ndarray, np.ndarray | None]:
    """Raw (actions (T, A), states (T, S) or None) for one video, whichever kind the IDM is."""
    if model.config.kind == "state":
        return label_states(model, embodiment, frames, device, autocast)
    return label_frames(model, embodiment, frames, batch_size, num_steps, seed, device, autocast, stride), None


def labelling_provenance(model, embodiment, stride: int = 1) -> dict[str, str]:
    """How the dataset's `observation.state` and `action` were obtained, for provenance files."""
    from dreamgen.idm.derive import describe

    if model.config.kind != "state":
        h = model.config.action_horizon
        return {"action": f"IDM flow-matching action chunks of {h} steps, one every {stride} frame(s); each "
                          f"frame the mean of the ~{h // stride} chunk(s) covering it",
                "observation.state": "not written (the IDM does not estimate state)"}
    if not model.config.state_dim:
        return {"action": "IDM action head, per frame", "observation.state": "not written (no state head)"}
    derived = describe(embodiment.action_from_state)
    return {"observation.state": "IDM state head: the state estimated in every frame",
            "action": (f"derived from the estimated states: {derived}; other dimensions from the IDM action head"
                       if derived else "IDM action head, per frame")}
