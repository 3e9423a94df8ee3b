"""finetune-policy end to end on CPU: diffusion and a tiny GR00T train, lower their loss, reload exactly,
resume; the CLI and the reference GR00T command lines run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dreamgen.errors import DreamgenError
from dreamgen.policy.checkpoint import LoadedPolicy, load_policy_checkpoint
from dreamgen.policy.eval import LeRobotToyWorldPolicy, is_lerobot_checkpoint
from dreamgen.policy.finetune import PolicyTrainConfig, finetune_policy
from dreamgen.policy.mixing import DatasetSpec
from tests.test_policy_helpers import CAM, DIFFUSION_TINY, write_dataset

REPO = Path(__file__).resolve().parents[1]
FAST = ["--policy.optimizer_lr=0.001", "--policy.scheduler_warmup_steps=0"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("poldata")
    return write_dataset(root / "real", episodes=3, length=24, seed=0), \
        write_dataset(root / "neural", episodes=2, length=24, seed=1, offset=0.5)


@pytest.fixture(scope="module")
def diffusion_run(data, tmp_path_factory):
    torch.set_num_threads(2)
    real, neural = data
    out = tmp_path_factory.mktemp("diffrun") / "run"
    cfg = PolicyTrainConfig([DatasetSpec(real, 1.0), DatasetSpec(neural, 0.5)], out, policy="diffusion",
                            steps=40, batch_size=16, num_workers=0, save_freq=20, log_freq=5, device="cpu",
                            lerobot_args=DIFFUSION_TINY + FAST)
    return cfg, finetune_policy(cfg)


def _obs(seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
            "state": rng.uniform(-1, 1, 2).astype(np.float32), "instruction": "move the dot"}


def _rollout(policy: LeRobotToyWorldPolicy, n=6, seed=0) -> np.ndarray:
    torch.manual_seed(seed)
    policy.reset()
    return np.stack([policy.act(_obs(i)) for i in range(n)])


def test_diffusion_trains_and_lowers_loss(diffusion_run):
    cfg, result = diffusion_run
    losses = result.losses
    assert len(losses) == 40
    assert np.mean(losses[-8:]) < 0.85 * np.mean(losses[:4]), losses
    log = [json.loads(x) for x in (cfg.output_dir / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [5, 10, 15, 20, 25, 30, 35, 40]


def test_checkpoint_layout_and_mix_stats(diffusion_run, data):
    cfg, result = diffusion_run
    ck = cfg.output_dir / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == ["000020", "000040", "last"]
    assert (ck / "last").resolve() == (ck / "000040").resolve()
    pm = result.checkpoint
    for name in ("config.json", "model.safetensors", "train_config.json", "policy_preprocessor.json",
                 "policy_postprocessor.json", "dreamgen_policy.json", "embodiment/modality.json"):
        assert (pm / name).is_file(), name
    info = json.loads((pm / "dreamgen_policy.json").read_text())
    assert [d["weight"] for d in info["datasets"]] == [1.0, 0.5] and info["video_keys"] == [CAM]
    # normalisation statistics are those of the mix as sampled (2/3 real, 1/3 neural)
    real, neural = data
    m = [json.loads((d / "meta" / "stats.json").read_text())["action"]["mean"] for d in (real, neural)]
    want = (2 / 3) * np.asarray(m[0]) + (1 / 3) * np.asarray(m[1])
    got = json.loads((pm / "embodiment" / "stats.json").read_text())["action"]["mean"]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert not np.allclose(got, m[0], atol=1e-3)
    assert is_lerobot_checkpoint(cfg.output_dir) and is_lerobot_checkpoint(pm)


def test_checkpoint_reload_gives_identical_actions(diffusion_run):
    cfg, result = diffusion_run
    info = json.loads((result.checkpoint / "dreamgen_policy.json").read_text())  # the instruction encoder
    trained = LeRobotToyWorldPolicy(LoadedPolicy(result.policy, result.preprocessor, result.postprocessor,
                                                 result.checkpoint, None, info))
    reloaded = LeRobotToyWorldPolicy.from_checkpoint(cfg.output_dir, device="cpu")
    assert reloaded.task_encoder.kind == "bow"  # diffusion's default
    a, b = _rollout(trained), _rollout(reloaded)
    assert a.shape == (6, 2) and np.isfinite(a).all()
    np.testing.assert_allclose(a, b, atol=1e-6)
    # actions come back in the dataset's units (unnormalised), not in [-1, 1] space only
    step0 = LeRobotToyWorldPolicy.from_checkpoint(cfg.output_dir / "checkpoints" / "000020", device="cpu")
    assert not np.allclose(_rollout(step0), b)


def test_resume_continues_from_last_checkpoint(diffusion_run, tmp_path):
    import shutil

    cfg, _ = diffusion_run
    out = tmp_path / "run"
    shutil.copytree(cfg.output_dir, out, symlinks=True)
    res = finetune_policy(PolicyTrainConfig([], out, steps=44, resume=True, num_workers=0, log_freq=2))
    assert len(res.losses) == 4
    state = json.loads((out / "checkpoints" / "000044" / "training_state" / "training_step.json").read_text())
    assert state["step"] == 44
    assert (out / "checkpoints" / "last").resolve().name == "000044"
    with pytest.raises(DreamgenError, match="different from the run"):
        finetune_policy(PolicyTrainConfig([DatasetSpec(cfg.datasets[0].path, 2.0)], out, steps=46, resume=True))


def test_missing_checkpoint_component_is_reported(diffusion_run, tmp_path):
    import shutil

    cfg, result = diffusion_run
    broken = tmp_path / "pm"
    shutil.copytree(result.checkpoint, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(DreamgenError, match="missing model.safetensors"):
        load_policy_checkpoint(broken)
    shutil.copy(result.checkpoint / "model.safetensors", broken)
    (broken / "policy_postprocessor.json").unlink()
    with pytest.raises(DreamgenError, match="missing policy_postprocessor.json"):
        load_policy_checkpoint(broken)
    with pytest.raises(DreamgenError, match="not a LeRobot policy checkpoint"):
        load_policy_checkpoint(tmp_path)


def test_cli_finetune_policy_passes_lerobot_flags(data, tmp_path):
    from typer.testing import CliRunner

    from dreamgen.cli import app

    real, neural = data
    out = tmp_path / "clirun"
    args = ["finetune-policy", "--policy", "diffusion", "--dataset", str(real), "--dataset", f"{neural}:0.25",
            "--out", str(out), "--steps", "2", "--batch-size", "4", "--num-workers", "0", "--device", "cpu",
            *DIFFUSION_TINY, "--policy.n_obs_steps=1"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    cfg = json.loads((out / "checkpoints" / "last" / "pretrained_model" / "config.json").read_text())
    assert cfg["type"] == "diffusion" and cfg["n_obs_steps"] == 1 and cfg["down_dims"] == [16, 32]
    bad = CliRunner().invoke(app, ["finetune-policy", "--dataset", f"{real}:-1", "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "positive number" in str(bad.exception)


# ---------------------------------------------------------------------------------------------- GR00T


@pytest.fixture(scope="module")
def groot_base(tmp_path_factory):
    from tests.groot_fixture import write_tiny_groot_base

    return write_tiny_groot_base(tmp_path_factory.mktemp("grootbase") / "base")


def test_tiny_groot_trains_offline_and_reloads(data, groot_base, tmp_path):
    torch.set_num_threads(2)
    real, neural = data
    out = tmp_path / "groot"
    cfg = PolicyTrainConfig([DatasetSpec(real), DatasetSpec(neural, 0.5)], out, policy="groot",
                            pretrained=str(groot_base), steps=80, batch_size=8, num_workers=0, save_freq=80,
                            log_freq=10, device="cpu",
                            lerobot_args=["--policy.use_bf16=false", "--policy.optimizer_lr=0.003",
                                          "--policy.warmup_ratio=0", "--policy.max_steps=0"])
    res = finetune_policy(cfg)
    # flow-matching losses are noisy step to step: compare the base and trained models on fixed batches/noise
    initial = type(res.policy)(res.policy.config)  # rebuilt from the base model folder = the starting weights
    before, after = _fixed_loss(initial, res.preprocessor, real), _fixed_loss(res.policy, res.preprocessor, real)
    assert after < 0.95 * before, (before, after)  # measured here: 1.16 -> 1.03 after 80 steps
    cfgj = json.loads((res.checkpoint / "config.json").read_text())
    assert cfgj["type"] == "groot" and cfgj["base_model_path"] == str(groot_base)
    trained = LeRobotToyWorldPolicy(LoadedPolicy(res.policy, res.preprocessor, res.postprocessor,
                                                 res.checkpoint, None, {}))
    reloaded = LeRobotToyWorldPolicy.from_checkpoint(out, device="cpu")
    a, b = _rollout(trained, n=3), _rollout(reloaded, n=3)
    assert a.shape == (3, 2)
    np.testing.assert_allclose(a, b, atol=1e-5)


def _fixed_loss(policy, preprocessor, root, seeds=range(4)) -> float:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/real", root=root, delta_timestamps={"action": [i / 10 for i in range(8)]},
                        return_uint8=True)
    items = [ds[i] for i in range(0, 64, 4)]
    batch = torch.utils.data.default_collate(items)
    batch[CAM] = batch[CAM].float() / 255.0
    batch = preprocessor(batch)
    losses = []
    policy.train()
    with torch.no_grad():
        for seed in seeds:
            torch.manual_seed(seed)
            losses.append(float(policy(batch)[0]))
    return float(np.mean(losses))


def test_groot_base_checks(groot_base, tmp_path):
    import shutil

    from dreamgen.policy.groot import check_groot_base

    check_groot_base(groot_base)
    broken = tmp_path / "b"
    shutil.copytree(groot_base, broken)
    (broken / "backbone" / "preprocessor_config.json").unlink()
    cfg = json.loads((broken / "config.json").read_text())
    cfg["model_name"] = str(broken / "backbone")
    (broken / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DreamgenError, match="missing preprocessor_config.json"):
        check_groot_base(broken)
    cfg["model_name"] = "nvidia/Cosmos-Reason2-2B"
    (broken / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DreamgenError, match="not a local folder"):
        check_groot_base(broken)


def test_reference_finetune_script_so100(groot_base, tmp_path):
    """IDM_dump/scripts/finetune/so100.sh -> torchrun scripts/gr00t_finetune.py on idm-extract's layout."""
    from dreamgen.embodiments import get_embodiment

    so100 = get_embodiment("so100")
    work = tmp_path / "repo"
    (work / "IDM_dump" / "data").mkdir(parents=True)
    for rel in ("scripts/gr00t_finetune.py", "IDM_dump/scripts/finetune/so100.sh"):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).symlink_to(REPO / rel)
    ds = write_dataset(work / "IDM_dump" / "data" / "so100.data_idm", episodes=2, length=20, state_dim=6,
                       action_dim=6, robot_type="so100", write_modality=False, fps=30)
    info = json.loads((ds / "meta" / "info.json").read_text())  # rename the camera to so100's
    info["features"][so100.video_key] = info["features"].pop(CAM)
    (ds / "meta" / "info.json").write_text(json.dumps(info))
    (ds / "videos" / CAM).rename(ds / "videos" / so100.video_key)
    stats = json.loads((ds / "meta" / "stats.json").read_text())
    stats[so100.video_key] = stats.pop(CAM)
    (ds / "meta" / "stats.json").write_text(json.dumps(stats))
    so100.save(tmp_path / "emb")  # modality.json as idm-extract writes it
    (ds / "meta" / "modality.json").write_text((tmp_path / "emb" / "modality.json").read_text())
    _rewrite_episode_video_keys(ds, CAM, so100.video_key)
    env = {**os.environ, "DREAMGEN_GROOT_BASE": str(groot_base), "PYTHONPATH": str(REPO),
           "TORCHRUN": str(Path(sys.executable).parent / "torchrun"), "OMP_NUM_THREADS": "2"}
    r = subprocess.run(["bash", "IDM_dump/scripts/finetune/so100.sh", "--max-steps", "2", "--batch-size", "2",
                        "--dataloader-num-workers", "0", "--device", "cpu", "--output-dir", str(tmp_path / "out"),
                        "--", "--policy.use_bf16=false"],
                       cwd=work, env=env, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    pm = tmp_path / "out" / "checkpoints" / "last" / "pretrained_model"
    assert json.loads((pm / "config.json").read_text())["embodiment_tag"] == "new_embodiment"
    assert json.loads((pm / "dreamgen_policy.json").read_text())["embodiment"] == "so100"
    # a missing base model is a clear error, not a hub download
    env.pop("DREAMGEN_GROOT_BASE")
    r = subprocess.run(["bash", "IDM_dump/scripts/finetune/so100.sh", "--max-steps", "1",
                        "--output-dir", str(tmp_path / "out2")], cwd=work, env=env, capture_output=True,
                       text=True, timeout=200)
    assert r.returncode != 0 and "local GR00T N1.7 base model folder" in r.stderr


def _rewrite_episode_video_keys(ds: Path, old: str, new: str) -> None:
    import pandas as pd

    for f in (ds / "meta" / "episodes").rglob("*.parquet"):
        df = pd.read_parquet(f)
        df = df.rename(columns={c: c.replace(old, new) for c in df.columns if old in c})
        df.to_parquet(f)


def test_toyworld_eval_of_a_trained_checkpoint(tmp_path):
    """A LeRobot checkpoint trained on ToyWorld-shaped data (64x64 image, 4-d state/action) runs closed loop
    through ToyWorld's evaluator, via `dreamgen eval-policy` and via ToyWorld's own loader registry."""
    pytest.importorskip("dreamgen.toyworld.evaluate")
    from typer.testing import CliRunner

    from dreamgen.cli import app
    from dreamgen.policy.eval import load_toyworld_policy as load_policy

    ds = write_dataset(tmp_path / "tw", episodes=2, length=12, size=64, state_dim=4, action_dim=4, fps=10)
    res = finetune_policy(PolicyTrainConfig([DatasetSpec(ds)], tmp_path / "run", policy="diffusion", steps=2,
                                            batch_size=4, num_workers=0, device="cpu",
                                            lerobot_args=[*DIFFUSION_TINY[:-2], "--policy.crop_shape=[56,56]"]))
    assert isinstance(load_policy(str(tmp_path / "run")), LeRobotToyWorldPolicy)
    r = CliRunner().invoke(app, ["eval-policy", str(res.checkpoint), "--out", str(tmp_path / "ev"),
                                 "--behavior", "pick_place", "--episodes", "1", "--device", "cpu", "--videos", "1"])
    assert r.exit_code == 0, r.output
    out = json.loads((tmp_path / "ev" / "results.json").read_text())
    row = out["results"][0]
    assert row["behavior"] == "pick_place" and row["episodes"] == 1 and len(row["ci95"]) == 2
    assert out["seed"] == 1000  # held-out layouts by default (demos are collected from seed 0)
    assert list((tmp_path / "ev" / "rollouts").glob("*.mp4"))


def test_pretrained_starts_an_adapted_policy_from_its_weights(data, tmp_path):
    """`--pretrained` with an adapted image encoder (FiLM + attended keypoints) starts from that policy's weights,
    not from a fresh initialisation (it used to be ignored on that path); a policy of another layout is refused."""
    from safetensors.torch import load_file

    real, _ = data
    adapted = dict(vision_trunk_layers=2, vision_instruction_film=True, vision_attended_keypoints=2)
    common = dict(policy="diffusion", batch_size=8, num_workers=0, device="cpu", log_freq=1)
    first = finetune_policy(PolicyTrainConfig([DatasetSpec(real)], tmp_path / "a", steps=3, seed=1,
                                              lerobot_args=DIFFUSION_TINY + FAST, **adapted, **common))
    # lr 0: the second run's weights are exactly what it started from
    still = ["--policy.optimizer_lr=0", "--policy.scheduler_warmup_steps=0"]
    second = finetune_policy(PolicyTrainConfig([DatasetSpec(real)], tmp_path / "b", steps=1, seed=2,
                                               pretrained=str(first.checkpoint), lerobot_args=DIFFUSION_TINY + still,
                                               **adapted, **common))
    a = load_file(str(Path(first.checkpoint) / "model.safetensors"))
    b = load_file(str(Path(second.checkpoint) / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    with pytest.raises(DreamgenError, match="image encoder"):
        finetune_policy(PolicyTrainConfig([DatasetSpec(real)], tmp_path / "c", steps=1, pretrained=str(first.checkpoint),
                                          lerobot_args=DIFFUSION_TINY + still, vision_trunk_layers=2, **common))
