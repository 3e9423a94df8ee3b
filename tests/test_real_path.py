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
    from tests.idm_fixture import synthetic_embodiment
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


# -- item 3b: a LoRA keeps its alpha ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def lora_alpha8(tmp_path_factory):
    """A tiny Cosmos2 base and a LoRA of rank 4, alpha 8 (scale 2) trained on it for a few steps, plus the
    reference: the base with the trained adapter weights set in memory, never saved in diffusers form."""
    from peft import LoraConfig
    from safetensors.torch import load_file

    from dreamgen.worldmodel.loading import load_world_model
    from tests.test_worldmodel import ft, one_clip_base

    root = tmp_path_factory.mktemp("wm_alpha")
    one_clip_base(root)
    out = ft(root, "lora", mode="lora", pretrained=str(root / "base"), steps=3, lr=3e-2, lora_alpha=8)
    ref = load_world_model(root / "base")
    ref.transformer.add_adapter(LoraConfig(r=4, lora_alpha=8, target_modules=ref.lora_targets()))
    params = dict(ref.transformer.named_parameters())
    ckpt = sorted((out / "checkpoints").glob("step_*"))[-1]
    for name, value in load_file(str(ckpt / "trainable.safetensors")).items():
        params[name].data.copy_(value)
    return root, out, ref


def _stock_load(root: Path, lora_folder: Path):
    """The base loaded, then the LoRA through diffusers' own model API (no dreamgen code in between)."""
    from dreamgen.worldmodel.loading import LORA_FILE, load_world_model

    bb = load_world_model(root / "base")
    bb.transformer.load_lora_adapter(str(lora_folder), weight_name=LORA_FILE, prefix="transformer")
    return bb


def test_lora_with_alpha_not_rank_reloads_at_its_scale(lora_alpha8):
    from safetensors import safe_open

    from dreamgen.worldmodel.loading import LORA_FILE, load_world_model
    from tests.test_worldmodel import sample

    root, out, ref = lora_alpha8
    with safe_open(str(out / LORA_FILE), "pt") as f:
        header = json.loads(f.metadata()["lora_adapter_metadata"])
    assert header["transformer.r"] == 4 and header["transformer.lora_alpha"] == 8
    want = sample(ref)
    assert not np.array_equal(want, sample(load_world_model(root / "base")))  # the LoRA changes the output
    np.testing.assert_array_equal(sample(load_world_model(out)), want)  # dreamgen
    np.testing.assert_array_equal(sample(_stock_load(root, out)), want)  # stock diffusers


def test_lora_saved_without_header_loads_with_recorded_alpha(lora_alpha8, tmp_path):
    """A LoRA file from before the header (alpha lost to diffusers): dreamgen restores the scale from the
    rank/alpha its dreamgen_wm.json records; stock diffusers, with nothing to read, loads alpha = rank."""
    import shutil

    from safetensors.torch import load_file, save_file

    from dreamgen.worldmodel.loading import LORA_FILE, load_world_model
    from tests.test_worldmodel import sample

    root, out, ref = lora_alpha8
    old = tmp_path / "old_lora"
    shutil.copytree(out, old, ignore=shutil.ignore_patterns("checkpoints"))
    save_file(load_file(str(old / LORA_FILE)), str(old / LORA_FILE), metadata={"format": "pt"})
    want = sample(ref)
    np.testing.assert_array_equal(sample(load_world_model(old)), want)
    assert not np.array_equal(sample(_stock_load(root, old)), want)  # the bug the header fixes


# -- item 6: a quiet environment -------------------------------------------------------------------------

def _stderr_of(code: str, tmp_path: Path) -> str:
    """Run `code` in a fresh interpreter and return what reached its stderr file descriptor (libav and
    libx264 write there directly, below Python's sys.stderr)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stderr


def test_writing_videos_and_datasets_prints_no_encoder_chatter(tmp_path):
    # two episodes: LeRobot restores FFmpeg's default (printing) log callback after encoding the first
    code = """
import numpy as np
from dreamgen.data import DatasetWriter, write_video
from tests.idm_fixture import synthetic_embodiment
with DatasetWriter("ds", synthetic_embodiment()) as w:
    for k in range(2):
        w.add_episode(np.full((6, 32, 32, 3), 40 * k, np.uint8), np.zeros((6, 2), np.float32), "move it")
write_video("v.mp4", np.full((6, 32, 32, 3), 40, np.uint8), 10)
"""
    err = _stderr_of(code, tmp_path)
    assert (tmp_path / "ds" / "meta" / "info.json").is_file() and (tmp_path / "v.mp4").is_file()
    for noise in ("libx264", "Error parsing option", "Map:", "[mp4 @", "[mov,mp4"):
        assert noise not in err, err[-2000:]


def test_lerobot_decoder_choice_prints_no_traceback(tmp_path):
    code = """
import lerobot.datasets.lerobot_dataset
from dreamgen.data.video import quiet_torchcodec_fallback
quiet_torchcodec_fallback()
from lerobot.utils.import_utils import get_safe_default_video_backend
get_safe_default_video_backend(), get_safe_default_video_backend()
"""
    err = _stderr_of(code, tmp_path)
    assert "Traceback" not in err and "libtorchcodec" not in err, err[-2000:]
    assert len(err.strip().splitlines()) <= 2, err  # at most LeRobot's one-line fallback note, per try


# -- item 7: one vocabulary ------------------------------------------------------------------------------

def test_preprocess_has_no_default_embodiment(tmp_path):
    from tests.test_bad_inputs import run_cli

    (tmp_path / "src" / "Task").mkdir(parents=True)
    code, _, err = run_cli("preprocess", tmp_path / "src", tmp_path / "dst")
    assert code == 2 and "-e/--embodiment" in err and "gr1" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "dst").exists()
