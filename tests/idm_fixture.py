"""A synthetic world for IDM tests and CPU benchmarks: a bright square moving by the action.

Frame t+1 shows the square moved by action[t] (pixels, x/y), so the action chunk between two frames
is recoverable from the images: exactly what an IDM must learn.
"""

from __future__ import annotations

import numpy as np

from dreamgen.embodiments import Embodiment
from dreamgen.idm.data import IDMEpisode


def moving_square_episodes(num_episodes: int, length: int = 24, size: int = 32, square: int = 6,
                           seed: int = 0) -> list[IDMEpisode]:
    """Each episode moves at a piecewise-constant velocity (changing every 8 steps) and bounces off walls."""
    rng = np.random.default_rng(seed)
    episodes = []
    for e in range(num_episodes):
        pos = rng.uniform(square, size - 2 * square, size=2)
        frames, actions = [], []
        vel = rng.uniform(-1.5, 1.5, size=2)
        for t in range(length):
            if t % 8 == 0 and t:
                vel = rng.uniform(-1.5, 1.5, size=2)
            img = np.full((size, size, 3), 20, np.uint8)
            x, y = np.round(pos).astype(int)
            img[y:y + square, x:x + square] = (240, 200, 60)
            frames.append(img)
            nxt = pos + vel
            for k in range(2):  # bounce: the action is the move actually made
                if not 0 <= nxt[k] <= size - square:
                    vel[k] = -vel[k]
                    nxt[k] = pos[k] + vel[k]
            actions.append((nxt - pos).astype(np.float32))
            pos = nxt
        episodes.append(IDMEpisode(action=np.stack(actions), frames=np.stack(frames), task="move the square",
                                   index=e))
    return episodes


def synthetic_embodiment(offsets=(0, 4), horizon: int = 4, image_size: int = 32, action_dim: int = 2,
                         stats: dict | None = None) -> Embodiment:
    return Embodiment(
        name="synthetic_square", robot_type="synthetic_square", fps=10,
        video_keys=["observation.images.cam"],
        modality={"state": {}, "action": {"delta": {"start": 0, "end": action_dim}},
                  "video": {"cam": {"original_key": "observation.images.cam"}}},
        stats=stats or {"action": {"mean": [0.0] * action_dim, "std": [1.0] * action_dim,
                                   "min": [-1.5] * action_dim, "max": [1.5] * action_dim,
                                   "q01": [-1.5] * action_dim, "q99": [1.5] * action_dim}},
        idm_image_size=[image_size, image_size],
        idm={"observation_offsets": list(offsets), "action_horizon": horizon},
        wm_resolution=[image_size, image_size], wm_num_frames=17,
    )
