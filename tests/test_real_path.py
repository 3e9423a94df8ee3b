"""Issue 17, the real-robot path: time is right (2), artefacts open without dreamgen (3b), a quiet
environment (6), one vocabulary (7). CPU only, small fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dreamgen.errors import DreamgenError


def _dream(n: int, h: int = 480, w: int = 832, seed: int = 0) -> np.ndarray:
    """A Cosmos-sized dream (832x480 by default): a bright square sliding right."""
    frames = np.full((n, h, w, 3), 30, np.uint8)
    s = h // 6
    for i in range(n):
        x = (w // 20 * i + 40 * seed) % (w - s)
        frames[i, s:2 * s, x:x + s] = (230, 60 + 40 * seed, 20)
    return frames


@pytest.fixture(scope="module")
def idm_ckpt(tmp_path_factory):
    """An untrained tiny IDM of the 10-fps synthetic embodiment (labels need not be good here)."""
    import torch

    from dreamgen.idm.checkpoint import save_checkpoint
    from dreamgen.idm.configuration_idm import IDMConfig
    from dreamgen.idm.modeling_idm import IDM
    from dreamgen.idm.synthetic import synthetic_embodiment
    from tests.test_idm import TINY

    torch.manual_seed(0)
    cfg = IDMConfig.from_dict({**TINY, "action_dim": 2, "action_horizon": 4, "observation_offsets": [0, 4],
                               "image_size": [32, 32]})
    return save_checkpoint(tmp_path_factory.mktemp("idm") / "ck", IDM(cfg), synthetic_embodiment(), {}, None)


# -- item 2: time is right ------------------------------------------------------------------------------

def _extract(ckpt, videos, out):
    from dreamgen.idm.extract import ExtractConfig, extract_actions

    return extract_actions(ExtractConfig(ckpt, videos, out, batch_size=8, device="cpu"))


def _no_labelling_started(out: Path) -> bool:
    work = out.with_name(out.name + ".work")
    return not out.exists() and not (work.exists() and any(work.glob("*.npz")))


def test_dreams_at_another_fps_are_refused_then_preprocessed(idm_ckpt, tmp_path):
    from dreamgen.data import write_video
    from dreamgen.idm.preprocess import PreprocessConfig, preprocess_videos

    dreams = tmp_path / "dreams"
    for i in range(2):
        write_video(dreams / "Pick_the_cube" / f"{i}.mp4", _dream(9, seed=i), fps=8)
    out = tmp_path / "neural"
    with pytest.raises(DreamgenError) as err:
        _extract(idm_ckpt, dreams, out)
    msg = str(err.value)
    assert "\n" not in msg and "8 fps" in msg and "10 fps" in msg and "dreamgen preprocess" in msg
    assert _no_labelling_started(out)

    # the fix the message names: resample to the embodiment's fps, then label
    fixed = tmp_path / "dreams_10fps"
    preprocess_videos(PreprocessConfig(dreams, fixed, str(idm_ckpt / "embodiment")))
    res = _extract(idm_ckpt, fixed, out)
    assert res.out == out and not res.failed
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["fps"] == 10 and info["total_frames"] == 2 * 11  # 9 frames at 8 fps = 1 s = 11 frames at 10 fps


@pytest.mark.parametrize("odd", ["fps", "size"])
def test_mixed_inputs_are_refused_before_labelling(idm_ckpt, tmp_path, odd):
    from dreamgen.data import write_video

    videos = tmp_path / "videos"
    for i in range(2):
        write_video(videos / "Pick_the_cube" / f"{i}.mp4", _dream(8, 48, 64, seed=i), fps=10)
    odd_file = videos / "Open_the_drawer" / "0.mp4"
    write_video(odd_file, _dream(8, 48, 64) if odd == "fps" else _dream(8, 32, 64), fps=8 if odd == "fps" else 10)
    out = tmp_path / "neural"
    with pytest.raises(DreamgenError) as err:
        _extract(idm_ckpt, videos, out)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(odd_file)) and "dreamgen preprocess" in msg
    assert ("8 fps" in msg) if odd == "fps" else ("64x32" in msg and "64x48" in msg)
    assert _no_labelling_started(out)
