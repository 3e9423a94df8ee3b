"""IDM: temporal ensembling, learning, checkpoints, extraction to LeRobot v3, bad inputs, torchrun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dreamgen.errors import DreamgenError, EmbodimentError, OutputExistsError
from dreamgen.idm.extract import ExtractConfig, ensemble_chunks, extract_actions
from dreamgen.idm.train import IDMTrainConfig, train_idm, training_history
from tests.idm_fixture import moving_square_episodes, synthetic_embodiment

ROOT = Path(__file__).resolve().parents[1]
TINY = {"encoder": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                    "patch_size": 8},
        "hidden_size": 32, "vl_layers": 1, "dit_layers": 2, "num_heads": 2, "num_inference_steps": 4}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # two threads on a loaded 2-core machine run ~8x slower than one for these tiny models
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_ensemble_chunks_hand_computed():
    # chunk t predicts actions t, t+1 (H=2); frame 0 is covered by chunk 0 only, frame 1 by chunks 0 and 1, ...
    chunks = np.array([[[1.0], [2.0]], [[3.0], [4.0]], [[5.0], [6.0]]])
    assert ensemble_chunks(chunks).ravel().tolist() == [1.0, 2.5, 4.5]
    chunks = np.arange(4 * 3 * 2, dtype=np.float32).reshape(4, 3, 2)  # H=3, A=2
    out = ensemble_chunks(chunks)
    assert np.allclose(out[2], (chunks[0, 2] + chunks[1, 1] + chunks[2, 0]) / 3)
    assert np.allclose(out[3], (chunks[1, 2] + chunks[2, 1] + chunks[3, 0]) / 3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("idm") / "run"
    eps = moving_square_episodes(10, length=24, seed=0)
    ckpt = train_idm(IDMTrainConfig(output_dir=out, episodes=eps, embodiment_obj=synthetic_embodiment(),
                                    model_config=TINY, batch_size=32, max_steps=160, save_steps=80, log_steps=20,
                                    learning_rate=2e-3, warmup_ratio=0.02, augment=False, device="cpu"))
    return out, ckpt, eps


def test_tiny_idm_learns_synthetic_mapping(trained):
    out, ckpt, eps = trained
    hist = [h for h in training_history(ckpt) if "loss" in h]
    assert ckpt.name == "checkpoint-160" and (out / "checkpoint-80").is_dir()
    assert hist[-1]["loss"] < hist[0]["loss"]
    vals = [(h["step"], h["val_loss"]) for h in training_history(ckpt) if "val_loss" in h]
    assert [s for s, _ in vals] == [0, 80, 160]
    assert vals[-1][1] < 0.6 * vals[0][1], vals  # held-out loss well below the untrained model's
    from dreamgen.idm.evaluate import EvalConfig, evaluate_idm

    res = evaluate_idm(EvalConfig(ckpt, device="cpu"), episodes=eps[9:])
    assert res["frames"] == 24 and res["idm_mse"] < res["baseline_mse"], res


def test_checkpoint_round_trip_and_resume(trained, tmp_path):
    from dreamgen.idm.checkpoint import load_idm

    out, ckpt, eps = trained
    files = {p.name for p in ckpt.iterdir()}
    assert {"model.safetensors", "config.json", "embodiment", "train_state.json", "training_state.pt"} <= files
    model, emb, state = load_idm(out)  # a run folder resolves to its newest checkpoint
    assert state["step"] == 160 and state["val_episodes"] == [9] and "command" in state
    assert emb.name == "synthetic_square" and emb.idm.observation_offsets == [0, 4]
    model2, _, _ = load_idm(ckpt)
    frames = torch.from_numpy(np.stack([eps[0].frames[[0, 4]], eps[1].frames[[3, 7]]]))
    a = model.sample(frames, generator=torch.Generator().manual_seed(0))
    b = model2.sample(frames, generator=torch.Generator().manual_seed(0))
    assert a.shape == (2, 4, 2) and torch.equal(a, b)
    # resuming continues the step count and keeps the normalisation
    import shutil

    run = tmp_path / "run"
    shutil.copytree(out, run)
    with pytest.raises(OutputExistsError, match="--resume"):
        train_idm(IDMTrainConfig(output_dir=run, episodes=eps, embodiment_obj=synthetic_embodiment(),
                                 model_config=TINY, max_steps=170, device="cpu"))
    ck = train_idm(IDMTrainConfig(output_dir=run, episodes=eps, embodiment_obj=synthetic_embodiment(),
                                  model_config=TINY, batch_size=32, max_steps=165, save_steps=80, augment=False,
                                  resume=True, device="cpu"))
    assert ck.name == "checkpoint-165"
    assert json.loads((ck / "embodiment" / "stats.json").read_text()) == \
        json.loads((ckpt / "embodiment" / "stats.json").read_text())


def _write_videos(root: Path, eps, fps=10):
    from dreamgen.data import write_video

    write_video(root / "Move_the_square" / "0.mp4", eps[0].frames, fps)
    write_video(root / "Move_the_square" / "1.mp4", eps[1].frames[:20], fps)
    write_video(root / "Push_it" / "0.mp4", eps[2].frames, fps)
    (root / "Push_it" / "0.json").write_text(json.dumps({"prompt": "Push it, gently."}))
    (root / "Broken" / "0.mp4").parent.mkdir(parents=True)
    (root / "Broken" / "0.mp4").write_bytes(b"not a video")
    write_video(root / "Short" / "0.mp4", eps[3].frames[:3], fps)  # shorter than the 5-frame window


def test_extract_to_lerobot_dataset(trained, tmp_path):
    _, ckpt, eps = trained
    videos = tmp_path / "videos"
    _write_videos(videos, eps)
    out = tmp_path / "neural"
    # shard 0/2 first: labels some videos and leaves the assembly for the final run
    part = extract_actions(ExtractConfig(ckpt, videos, out, batch_size=16, device="cpu", shard=(0, 2)))
    assert part.out is None and not out.exists()
    res = extract_actions(ExtractConfig(ckpt, videos, out, batch_size=16, device="cpu"))
    assert res.out == out and res.skipped_done == len(part.labelled)
    assert set(res.failed) == {"Broken/0.mp4", "Short/0.mp4"}
    assert "shorter than the IDM window" in res.failed["Short/0.mp4"]
    assert "FAILED Broken/0.mp4" in res.summary()
    assert not (tmp_path / "neural.work").exists()

    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/neural", root=out)
    assert ds.num_episodes == 3 and ds.num_frames == 24 + 20 + 24
    item = ds[30]
    assert item["action"].shape == (2,)
    assert sorted(ds.meta.tasks.index) == ["Move the square", "Push it, gently."]
    meta = out / "meta"
    prov = json.loads((meta / "dreamgen_provenance.json").read_text())
    assert prov["idm_checkpoint"] == str(ckpt.resolve()) and set(prov["failed_videos"]) == set(res.failed)
    assert json.loads((meta / "modality.json").read_text())["action"] == {"delta": {"start": 0, "end": 2}}
    with pytest.raises(OutputExistsError):
        extract_actions(ExtractConfig(ckpt, videos, out, device="cpu"))


def test_extract_bad_inputs(trained, tmp_path):
    _, ckpt, _ = trained
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DreamgenError, match="no .mp4"):
        extract_actions(ExtractConfig(ckpt, empty, tmp_path / "o1", device="cpu"))
    bad = tmp_path / "bad" / "Task"
    bad.mkdir(parents=True)
    (bad / "0.mp4").write_bytes(b"junk")
    with pytest.raises(DreamgenError, match="no video could be labelled"):
        extract_actions(ExtractConfig(ckpt, tmp_path / "bad", tmp_path / "o2", device="cpu"))
    assert not (tmp_path / "o2").exists()
    with pytest.raises(EmbodimentError, match="action width 2"):
        extract_actions(ExtractConfig(ckpt, tmp_path / "bad", tmp_path / "o3", device="cpu", embodiment="gr1"))
    with pytest.raises(DreamgenError, match="checkpoint folder not found"):
        extract_actions(ExtractConfig(tmp_path / "nope", tmp_path / "bad", tmp_path / "o4", device="cpu"))


@pytest.fixture(scope="module")
def synthetic_dataset(tmp_path_factory):
    from dreamgen.data import DatasetWriter

    root = tmp_path_factory.mktemp("ds")
    emb = synthetic_embodiment()
    emb.save(root / "embodiment")
    with DatasetWriter(root / "square", emb) as w:
        for ep in moving_square_episodes(3, length=16, seed=1):
            w.add_episode(ep.frames, ep.action, ep.task)
    return root / "square", root / "embodiment"


def test_torchrun_entry_point_one_process(synthetic_dataset, tmp_path):
    dataset, emb_dir = synthetic_dataset
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MUJOCO_GL": "egl"}
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node=1",
           str(ROOT / "scripts/idm_training.py"), "--dataset-path", str(dataset), "--embodiment_tag", str(emb_dir),
           "--model-config", "tiny", "--max-steps", "4", "--save_steps", "2", "--batch-size", "8",
           "--output-dir", str(out), "--dataloader-num-workers", "0", "--report-to", "wandb"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert (out / "checkpoint-2" / "model.safetensors").is_file() and (out / "checkpoint-4").is_dir()
    state = json.loads((out / "checkpoint-4" / "train_state.json").read_text())
    assert state["val_episodes"] == [2] and state["dataset_path"] == str(dataset)
    assert "idm_training.py" in state["command"]


def test_train_refuses_mismatched_embodiment(synthetic_dataset, tmp_path):
    dataset, _ = synthetic_dataset
    with pytest.raises(EmbodimentError, match="action width"):
        train_idm(IDMTrainConfig(dataset_path=dataset, embodiment="so100", output_dir=tmp_path / "r",
                                 model_config="tiny", max_steps=1, device="cpu"))


def test_pretrained_siglip_folder_loads_and_checkpoint_is_self_contained(tmp_path):
    """encoder_path: a local transformers SigLIP folder (here a tiny full SiglipModel, as released checkpoints
    are); the IDM checkpoint must then load without that folder."""
    import shutil

    from transformers import SiglipConfig, SiglipModel

    from dreamgen.idm.checkpoint import load_idm, save_checkpoint
    from dreamgen.idm.configuration_idm import IDMConfig
    from dreamgen.idm.modeling_idm import IDM

    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
              "patch_size": 8, "image_size": 32}
    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
            "vocab_size": 100}
    siglip = SiglipModel(SiglipConfig(vision_config=vision, text_config=text))
    siglip.save_pretrained(tmp_path / "siglip")
    cfg = IDMConfig.from_dict({**TINY, "encoder_path": str(tmp_path / "siglip"), "action_dim": 2,
                               "action_horizon": 4, "observation_offsets": [0, 4], "image_size": [48, 48]})
    model = IDM(cfg).eval()
    ref = siglip.vision_model.embeddings.patch_embedding.weight
    assert torch.equal(model.encoder.embeddings.patch_embedding.weight, ref)  # pretrained weights, not random
    save_checkpoint(tmp_path / "ckpt", model, synthetic_embodiment())
    shutil.rmtree(tmp_path / "siglip")
    loaded, _, _ = load_idm(tmp_path / "ckpt")
    assert torch.equal(loaded.encoder.embeddings.patch_embedding.weight, ref)
    frames = torch.randint(0, 255, (1, 2, 40, 40, 3), dtype=torch.uint8)  # resized to the encoder's 32x32
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(model.sample(frames, generator=g()), loaded.sample(frames, generator=g()))
    (tmp_path / "notsiglip").mkdir()
    (tmp_path / "notsiglip" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(DreamgenError, match="SigLIP"):
        IDM(IDMConfig.from_dict({**TINY, "encoder_path": str(tmp_path / "notsiglip")}))


def test_cli_convert_dry_run(tmp_path):
    src = tmp_path / "gen"
    src.mkdir()
    (src / "0_Pick_the_cup.mp4").write_bytes(b"v")
    (src / "1_Pick_the_cup.mp4").write_bytes(b"v")
    exe = str(Path(sys.executable).parent / "dreamgen")
    r = subprocess.run([exe, "convert", str(src), str(tmp_path / "out"), "--dry-run"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Pick_the_cup/1.mp4" in r.stdout and not (tmp_path / "out").exists()
