"""Tiny LeRobot v3 datasets for the policy-stage tests (written with LeRobot, no download)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CAM = "observation.images.cam"


def modality(state_dim: int = 2, action_dim: int = 2) -> dict:
    return {
        "state": {"xy": {"start": 0, "end": state_dim}},
        "action": {"dxy": {"start": 0, "end": action_dim}},
        "video": {"cam": {"original_key": CAM}},
    }


def write_dataset(root: Path, episodes: int = 3, length: int = 24, size: int = 32, state_dim: int = 2,
                  action_dim: int = 2, seed: int = 0, offset: float = 0.0, robot_type: str = "toy2",
                  with_state: bool = True, fps: int = 10, write_modality: bool = True) -> Path:
    """A point moving towards a goal; the image shows the point. `offset` shifts states/actions so
    datasets are distinguishable by their statistics."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    features = {
        CAM: {"dtype": "video", "shape": (size, size, 3), "names": ["height", "width", "channels"]},
        "action": {"dtype": "float32", "shape": (action_dim,), "names": [f"a{i}" for i in range(action_dim)]},
    }
    if with_state:
        features["observation.state"] = {
            "dtype": "float32", "shape": (state_dim,), "names": [f"s{i}" for i in range(state_dim)]}
    ds = LeRobotDataset.create(repo_id=f"local/{root.name}", fps=fps, features=features, root=root,
                               robot_type=robot_type, use_videos=True)
    rng = np.random.default_rng(seed)
    for _ in range(episodes):
        pos = rng.uniform(-1, 1, size=state_dim).astype(np.float32)
        goal = rng.uniform(-1, 1, size=state_dim).astype(np.float32)
        for _t in range(length):
            act = np.zeros(action_dim, dtype=np.float32)
            k = min(state_dim, action_dim)
            act[:k] = 0.2 * (goal[:k] - pos[:k])
            img = np.zeros((size, size, 3), dtype=np.uint8)
            px = np.clip(((pos[:2] + 1) / 2 * (size - 4)).astype(int), 0, size - 4) if state_dim >= 2 else (0, 0)
            img[px[1]:px[1] + 4, px[0]:px[0] + 4] = 255
            frame = {CAM: img, "action": act + offset, "task": "move the dot"}
            if with_state:
                frame["observation.state"] = pos + offset
            ds.add_frame(frame)
            pos = pos.copy()
            pos[:k] += act[:k]
        ds.save_episode()
    ds.finalize()
    if write_modality:
        (root / "meta" / "modality.json").write_text(json.dumps(modality(state_dim, action_dim)))
    return root


DIFFUSION_TINY = [
    "--policy.n_obs_steps=2",
    "--policy.horizon=8",
    "--policy.n_action_steps=4",
    "--policy.down_dims=[16,32]",
    "--policy.kernel_size=3",
    "--policy.n_groups=4",
    "--policy.diffusion_step_embed_dim=16",
    "--policy.crop_shape=[28,28]",
    "--policy.spatial_softmax_num_keypoints=8",
    "--policy.num_inference_steps=4",
    "--policy.use_separate_rgb_encoder_per_camera=false",
    "--optimizer.lr=0.001",
]
