"""The ToyWorld judges of the experiment: the sim-replay judge of dreams.

The IDM labels a dream, the labels are replayed open-loop in ToyWorld from the dream's own initial state,
and the task's success predicate decides: a ToyWorld-only stand-in for a VLM judge, reported as such.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dreamgen.errors import DreamgenError


class IDMLabeller:
    """An IDM checkpoint, loaded once, that turns frames into actions."""

    def __init__(self, checkpoint: str | Path, device: str = "auto"):
        from dreamgen.idm import device_and_autocast, load_idm

        self.device, self.autocast = device_and_autocast(device, "auto")
        self.model, self.embodiment, _ = load_idm(checkpoint, self.device)

    def label(self, frames: np.ndarray) -> np.ndarray:
        import torch

        from dreamgen.idm import label_video

        with torch.no_grad():
            return label_video(self.model, self.embodiment, frames, device=self.device, autocast=self.autocast)[0]


def sim_replay_judge_fn(labeller: IDMLabeller, manifest: dict[int, dict], image_size: int):
    from dreamgen.data import read_video
    from dreamgen.naming import parse_dream_path
    from dreamgen.toyworld.replay import replay_actions

    def judge(video: str | Path, instruction: str, task: str) -> str:
        index, _ = parse_dream_path(video)
        item = manifest.get(index)
        if item is None:
            raise DreamgenError(f"{video}: no dream input #{index} in the manifest")
        actions = labeller.label(read_video(video))
        ok = replay_actions(actions, item["behavior"], item["env"], item["seed"], image_size)
        return "1" if ok else "0"

    return judge
