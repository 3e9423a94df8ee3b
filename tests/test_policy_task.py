"""Instruction conditioning (hashed bag-of-words -> observation.environment_state) and the frame cache."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from dreamgen.errors import DreamgenError
from dreamgen.policy.task_encoding import (
    TASK_FEATURE_KEY,
    TaskEncoder,
    bow_feature,
    resolve_task_conditioning,
)
from tests.test_policy_helpers import CAM, DIFFUSION_TINY, write_dataset

LEFT, RIGHT = "push the block to the left", "push the block to the right"
TARGET = {LEFT: np.array([-0.8, 0.4], np.float32), RIGHT: np.array([0.8, -0.4], np.float32)}


# ---------------------------------------------------------------------------------------------- the feature


def test_bow_feature_is_stable_hashed_unigrams_and_bigrams():
    v = bow_feature("Red", 64)
    h = zlib.crc32(b"u:red")
    expected = np.zeros(64, np.float32)
    expected[h % 64] = 1.0 if (h >> 31) & 1 == 0 else -1.0
    np.testing.assert_array_equal(v, expected)  # crc32 of the lower-cased word: same in every process
    pp = "pick up the red cube and place it on the plate"
    a = bow_feature(pp)
    assert a.shape == (128,) and a.dtype == np.float32
    assert np.isclose(np.linalg.norm(a), 1.0)
    np.testing.assert_array_equal(a, bow_feature("PICK up the red cube, and place it on the plate!"))
    # word order matters through bigrams; unseen words still give a defined, distinct feature
    assert not np.allclose(bow_feature("the cube red"), bow_feature("the red cube"))
    objects = ["red cube", "green cube", "blue cube", "yellow cylinder"]
    feats = np.stack([bow_feature(f"pick up the {o} and place it on the plate") for o in objects])
    gram = feats @ feats.T
    assert np.all(gram[~np.eye(4, dtype=bool)] < 0.95), gram
    assert np.isclose(np.linalg.norm(bow_feature("zorble the frobnicator leftwards")), 1.0)
    assert not bow_feature("").any() and not bow_feature("?!").any()


def test_encoder_shapes_json_and_policy_defaults():
    enc = TaskEncoder("bow", 32)
    t = enc.tensor([LEFT, RIGHT, LEFT], steps=2)
    assert t.shape == (3, 2, 32) and torch.equal(t[0], t[2]) and torch.equal(t[0, 0], t[0, 1])
    assert enc.tensor([LEFT]).shape == (1, 32)
    assert TaskEncoder.from_json(json.loads(json.dumps(enc.to_json()))) == enc
    assert not TaskEncoder.from_json(None).enabled and not TaskEncoder.from_json({"kind": "none"}).enabled
    st = enc.stats()
    assert np.all(st["mean"] == 0) and np.all(st["std"] == 1) and np.all(st["min"] == -1) and np.all(st["max"] == 1)
    assert resolve_task_conditioning("diffusion", None) == TaskEncoder("bow", 128)
    assert resolve_task_conditioning("act", None).enabled
    assert not resolve_task_conditioning("groot", None).enabled
    assert not resolve_task_conditioning("diffusion", "none").enabled
    with pytest.raises(DreamgenError, match="does not take an observation.environment_state"):
        resolve_task_conditioning("groot", "bow")
    with pytest.raises(DreamgenError, match="bow, none"):
        TaskEncoder("clip")


# ---------------------------------------------------------------------------------------------- frame cache


def test_frame_cache_matches_lerobot_items_and_batches(tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from dreamgen.policy.frame_cache import CachedDataset, should_cache
    from dreamgen.policy.mixing import CachedMixedDataset, DatasetSpec, MixtureMeta

    roots = [write_dataset(tmp_path / "a", episodes=3, length=6, seed=0),
             write_dataset(tmp_path / "b", episodes=2, length=5, seed=1, offset=0.5)]
    delta = {CAM: [-0.1, 0.0], "observation.state": [-0.1, 0.0], "action": [i / 10 for i in range(-1, 5)]}
    keys = [CAM, "observation.state", "action"]
    lr = [LeRobotDataset(f"local/{r.name}", root=r, delta_timestamps=delta, return_uint8=True,
                         video_backend="pyav") for r in roots]
    cached = [CachedDataset(d, keys, progress=False) for d in lr]
    for d, c in zip(lr, cached, strict=True):
        assert len(c) == len(d) and c.num_episodes == d.num_episodes
        for i in range(len(d)):  # every frame: episode starts/ends exercise the clamping and padding
            want, got = d[i], c[i]
            assert set(got) == set(want), set(got) ^ set(want)
            for k, v in want.items():
                if k == "task":
                    assert got[k] == v
                else:
                    assert got[k].shape == v.shape and got[k].dtype == v.dtype, k
                    assert torch.equal(got[k], v), (k, i)
    mix = CachedMixedDataset(cached, [DatasetSpec(r) for r in roots], keys, MixtureMeta(lr[0].meta, {}, {}))
    idx = [20, 0, 17, 5, 18, 17]
    batch = mix.__getitems__(idx)
    for row, i in enumerate(idx):
        item = mix[i]
        assert batch["task"][row] == item["task"]
        for k in (CAM, "action", "action_is_pad", "index", "dataset_index"):
            assert torch.equal(batch[k][row], item[k]), (k, i)
    assert batch["dataset_index"].tolist() == [1, 0, 0, 0, 1, 0]
    assert batch[CAM].shape == (6, 2, 3, 32, 32) and batch[CAM].dtype == torch.uint8
    # auto caches only what fits the budget
    metas = [d.meta for d in lr]
    assert should_cache("auto", metas, [CAM], 1.0) and not should_cache("auto", metas, [CAM], 1e-6)
    assert should_cache("on", metas, [CAM], 1e-6) and not should_cache("off", metas, [CAM], 1.0)


# ---------------------------------------------------------------------------------------------- learning


def write_two_task_dataset(root: Path, episodes_per_task: int = 4, length: int = 12) -> Path:
    """Identical images and states for both tasks; only the instruction says which action is right."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    size = 32  # LeRobot's video encoder crashes (SIGFPE) on 16x16 frames
    features = {
        CAM: {"dtype": "video", "shape": (size, size, 3), "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": (2,), "names": ["s0", "s1"]},
        "action": {"dtype": "float32", "shape": (2,), "names": ["a0", "a1"]},
    }
    ds = LeRobotDataset.create(repo_id=f"local/{root.name}", fps=10, features=features, root=root,
                               robot_type="toy2", use_videos=True)
    img = np.full((size, size, 3), 90, np.uint8)
    img[8:24, 8:24] = (200, 40, 40)
    for e in range(2 * episodes_per_task):
        task = (LEFT, RIGHT)[e % 2]
        for _ in range(length):
            ds.add_frame({CAM: img, "observation.state": np.zeros(2, np.float32), "action": TARGET[task],
                          "task": task})
        ds.save_episode()
    ds.finalize()
    return root


# x0 ("sample") prediction learns this deterministic mapping in ~100 CPU steps; epsilon prediction needs
# many more (measured: 150 steps, loss 0.18, actions not yet separated) - too slow for a unit test.
TASK_TINY = [*DIFFUSION_TINY, "--policy.scheduler_warmup_steps=0", "--policy.optimizer_lr=0.003",
             "--policy.prediction_type=sample"]


@pytest.fixture(scope="module")
def task_runs(tmp_path_factory):
    from dreamgen.policy.finetune import PolicyTrainConfig, finetune_policy
    from dreamgen.policy.mixing import DatasetSpec

    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("taskdata")
    ds = write_two_task_dataset(root / "two_tasks")
    runs = {}
    for kind, steps in (("bow", 100), ("none", 10)):
        cfg = PolicyTrainConfig([DatasetSpec(ds)], root / f"run_{kind}", policy="diffusion", steps=steps,
                                batch_size=16, num_workers=0, save_freq=0, log_freq=10, device="cpu",
                                task_conditioning=kind, task_dim=32, lerobot_args=TASK_TINY)
        runs[kind] = (cfg, finetune_policy(cfg))
    return runs


def _mean_action(policy, instruction: str, seeds=range(6)) -> np.ndarray:
    obs = {"image": np.full((32, 32, 3), 90, np.uint8), "state": np.zeros(2, np.float32),
           "instruction": instruction}
    obs["image"][8:24, 8:24] = (200, 40, 40)
    acts = []
    for s in seeds:
        torch.manual_seed(s)
        policy.reset()
        acts.append(policy.act(obs))
    return np.mean(acts, axis=0)


def _wrap(result):
    from dreamgen.policy.checkpoint import LoadedPolicy
    from dreamgen.policy.eval import LeRobotToyWorldPolicy

    info = json.loads((result.checkpoint / "dreamgen_policy.json").read_text())
    return LeRobotToyWorldPolicy(LoadedPolicy(result.policy, result.preprocessor, result.postprocessor,
                                              result.checkpoint, None, info))


def test_bow_policy_follows_the_instruction_and_none_cannot(task_runs):
    _, bow = task_runs["bow"]
    policy = _wrap(bow)
    left, right = _mean_action(policy, LEFT), _mean_action(policy, RIGHT)
    # the same image and state; only the instruction differs, and the actions follow it
    assert left[0] < -0.4 and right[0] > 0.4, (left, right)
    assert np.abs(left - TARGET[LEFT]).max() < 0.4 and np.abs(right - TARGET[RIGHT]).max() < 0.4, (left, right)
    _, none = task_runs["none"]
    blind = _wrap(none)
    assert TASK_FEATURE_KEY not in none.policy.config.input_features
    np.testing.assert_allclose(_mean_action(blind, LEFT), _mean_action(blind, RIGHT), atol=1e-6)


def test_bow_checkpoint_records_encoder_and_reloads_exactly(task_runs):
    from dreamgen.policy.eval import LeRobotToyWorldPolicy

    cfg, res = task_runs["bow"]
    info = json.loads((res.checkpoint / "dreamgen_policy.json").read_text())
    assert info["task_conditioning"]["kind"] == "bow" and info["task_conditioning"]["dim"] == 32
    pcfg = json.loads((res.checkpoint / "config.json").read_text())
    assert pcfg["input_features"][TASK_FEATURE_KEY]["shape"] == [32]
    reloaded = LeRobotToyWorldPolicy.from_checkpoint(cfg.output_dir, device="cpu")
    assert reloaded.task_encoder == TaskEncoder("bow", 32)
    trained = _wrap(res)
    for text in (LEFT, RIGHT, "push the block forward"):  # an unseen instruction too
        np.testing.assert_allclose(_mean_action(trained, text, seeds=[3]), _mean_action(reloaded, text, seeds=[3]),
                                   atol=1e-5)
    none_info = json.loads((task_runs["none"][1].checkpoint / "dreamgen_policy.json").read_text())
    assert none_info["task_conditioning"] == {"kind": "none"}


def test_cli_task_conditioning_flag(tmp_path, task_runs):
    from typer.testing import CliRunner

    from dreamgen.cli import app

    ds = task_runs["bow"][0].datasets[0].path
    r = CliRunner().invoke(app, ["finetune-policy", "--policy", "groot", "--dataset", str(ds), "--out",
                                 str(tmp_path / "g"), "--task-conditioning", "bow", "--pretrained", str(tmp_path)])
    assert r.exit_code != 0 and "does not take an observation.environment_state" in str(r.exception)
    r = CliRunner().invoke(app, ["finetune-policy", "--policy", "diffusion", "--dataset", str(ds), "--out",
                                 str(tmp_path / "d"), "--task-conditioning", "bogus"])
    assert r.exit_code != 0 and "bow or none" in str(r.exception)
    # ACT takes the feature without a time axis (n_obs_steps 1): train 2 steps through the CLI and act
    act = ["--policy.dim_model=16", "--policy.n_heads=2", "--policy.dim_feedforward=32", "--policy.n_encoder_layers=1",
           "--policy.n_decoder_layers=1", "--policy.chunk_size=4", "--policy.n_action_steps=4", "--policy.use_vae=false"]
    r = CliRunner().invoke(app, ["finetune-policy", "--policy", "act", "--dataset", str(ds), "--out", str(tmp_path / "a"),
                                 "--steps", "2", "--batch-size", "4", "--device", "cpu", "--task-dim", "16", *act])
    assert r.exit_code == 0, r.output
    from dreamgen.policy.eval import LeRobotToyWorldPolicy

    policy = LeRobotToyWorldPolicy.from_checkpoint(tmp_path / "a", device="cpu")
    assert policy.task_encoder == TaskEncoder("bow", 16)
    assert policy.act({"image": np.zeros((32, 32, 3), np.uint8), "state": np.zeros(2, np.float32),
                       "instruction": LEFT}).shape == (2,)


# ---------------------------------------------------------------------------------------------- LeRobot step


def _lerobot_pipelines(folder: Path):
    """The checkpoint's processors as LeRobot itself loads them (dreamgen.policy imported: step registered)."""
    from lerobot.processor import PolicyProcessorPipeline
    from lerobot.processor.converters import policy_action_to_transition, transition_to_policy_action

    import dreamgen.policy  # noqa: F401

    pre = PolicyProcessorPipeline.from_pretrained(folder, config_filename="policy_preprocessor.json",
                                                  overrides={"device_processor": {"device": "cpu"}})
    post = PolicyProcessorPipeline.from_pretrained(folder, config_filename="policy_postprocessor.json",
                                                   to_transition=policy_action_to_transition,
                                                   to_output=transition_to_policy_action)
    return pre, post


def test_instruction_step_is_saved_and_runs_from_lerobot_api(task_runs):
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    _, res = task_runs["bow"]
    steps = json.loads((res.checkpoint / "policy_preprocessor.json").read_text())["steps"]
    names = [s.get("registry_name") for s in steps]
    at = names.index("dreamgen_task_feature")
    assert at < names.index("normalizer_processor")
    assert steps[at]["config"] == {"kind": "bow", "dim": 32, "key": TASK_FEATURE_KEY}
    pre, post = _lerobot_pipelines(res.checkpoint)
    texts = [LEFT, "push the block forward"]  # an unseen instruction too
    want = torch.from_numpy(np.stack([bow_feature(t, 32) for t in texts]))
    out = pre({CAM: torch.rand(2, 3, 32, 32), "observation.state": torch.zeros(2, 2), "task": texts})
    assert torch.equal(out[TASK_FEATURE_KEY], want)
    # a training batch (n_obs_steps 2): the feature gets the same time axis
    out = pre({CAM: torch.rand(2, 2, 3, 32, 32), "observation.state": torch.zeros(2, 2, 2), "task": texts})
    assert out[TASK_FEATURE_KEY].shape == (2, 2, 32) and torch.equal(out[TASK_FEATURE_KEY][:, 1], want)
    # the whole policy from LeRobot's API acts as dreamgen's wrapper does, given only image, state and text
    policy = DiffusionPolicy.from_pretrained(res.checkpoint, local_files_only=True).eval()
    img = np.full((32, 32, 3), 90, np.uint8)
    for text in (LEFT, RIGHT):
        torch.manual_seed(3)
        batch = pre({CAM: torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0,
                     "observation.state": torch.zeros(1, 2), "task": [text]})
        with torch.inference_mode():
            action = post(policy.select_action(batch)).numpy().reshape(-1)
        policy.reset()
        ours = _wrap(res)
        ours.reset()
        torch.manual_seed(3)
        np.testing.assert_allclose(action, ours.act({"image": img, "state": np.zeros(2, np.float32),
                                                     "instruction": text}), atol=1e-5)


def test_checkpoint_without_the_step_still_loads_and_acts_the_same(task_runs, tmp_path):
    import shutil

    from dreamgen.policy.checkpoint import load_policy_checkpoint
    from dreamgen.policy.eval import LeRobotToyWorldPolicy
    from dreamgen.policy.task_step import TaskFeatureStep, ensure_task_step, task_steps

    _, res = task_runs["bow"]
    old = tmp_path / "pretrained_model"
    shutil.copytree(res.checkpoint, old)
    cfg_path = old / "policy_preprocessor.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["steps"] = [s for s in cfg["steps"] if s.get("registry_name") != "dreamgen_task_feature"]
    cfg_path.write_text(json.dumps(cfg))  # as saved before the step existed
    loaded = load_policy_checkpoint(old, device="cpu")
    names = [type(s).__name__ for s in loaded.preprocessor.steps]
    assert names.index("TaskFeatureStep") == names.index("NormalizerProcessorStep") - 1
    assert loaded.task_encoder == TaskEncoder("bow", 32)
    new, older = _wrap(res), LeRobotToyWorldPolicy(loaded)
    for text in (LEFT, RIGHT):
        np.testing.assert_allclose(_mean_action(new, text, seeds=[5]), _mean_action(older, text, seeds=[5]),
                                   atol=1e-5)
    assert not ensure_task_step(loaded.preprocessor, TaskEncoder("bow", 32))  # already there: left as it is
    assert len(task_steps(loaded.preprocessor)) == 1
    with pytest.raises(DreamgenError, match="trained with"):
        ensure_task_step(loaded.preprocessor, TaskEncoder("bow", 16))
    with pytest.raises(DreamgenError, match="no 'task' text"):
        TaskFeatureStep("bow", 32)({"observation": {"observation.state": torch.zeros(1, 2)},
                                    "complementary_data": {}})
