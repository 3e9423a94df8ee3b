"""Dataset mixing for finetune-policy: sampling weights, pooled statistics, bad inputs caught early."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dreamgen.errors import DatasetError, DreamgenError, EmbodimentError
from dreamgen.policy.mixing import (
    DatasetSpec,
    WeightedMixSampler,
    check_mixture,
    mix_stats,
    parse_dataset_spec,
)
from tests.test_policy_helpers import write_dataset


def test_sample_frequencies_follow_weights():
    frames = [np.arange(0, 100), np.arange(100, 110), np.arange(110, 1110)]
    weights = [1.0, 3.0, 0.5]
    s = WeightedMixSampler(frames, weights, num_samples=30_000, seed=3)
    idx = np.fromiter(iter(s), dtype=np.int64)
    which = np.searchsorted([100, 110], idx, side="right")
    freq = np.bincount(which, minlength=3) / len(idx)
    np.testing.assert_allclose(freq, np.asarray(weights) / sum(weights), atol=0.01)
    # within a dataset, frames are drawn uniformly (the small dataset is heavily repeated, not truncated)
    small = idx[which == 1]
    assert set(small.tolist()) == set(range(100, 110))
    assert np.bincount(small - 100).min() > 0.7 * len(small) / 10


def test_sampler_is_deterministic_and_resumes_mid_pass():
    frames = [np.arange(0, 50), np.arange(50, 60)]
    a = WeightedMixSampler(frames, [1, 1], num_samples=40, seed=7)
    first, second = list(a), list(a)
    assert first != second  # a new pass draws new indices
    b = WeightedMixSampler(frames, [1, 1], num_samples=40, seed=7)
    b.resume_at(40 + 15)  # 1 full pass and 15 samples consumed
    assert list(b) == second[15:]
    assert list(b)[:5] == list(WeightedMixSampler(frames, [1, 1], num_samples=40, seed=7).indices(2))[:5]


def test_mix_stats_pool_with_sampling_probabilities():
    s1 = {"action": {"mean": np.array([0.0]), "std": np.array([1.0]), "min": np.array([-2.0]),
                     "max": np.array([2.0]), "q01": np.array([-1.5]), "q99": np.array([1.5])}}
    s2 = {"action": {"mean": np.array([4.0]), "std": np.array([2.0]), "min": np.array([0.0]),
                     "max": np.array([9.0]), "q01": np.array([0.5]), "q99": np.array([8.0])}}
    out = mix_stats([s1, s2], [3.0, 1.0], ["action"])["action"]
    assert out["mean"][0] == pytest.approx(1.0)
    # var = .75*(1 + 1) + .25*(4 + 9) = 4.75
    assert out["std"][0] == pytest.approx(np.sqrt(4.75), rel=1e-5)
    assert out["min"][0] == -2.0 and out["max"][0] == 9.0
    assert out["q99"][0] == pytest.approx(0.75 * 1.5 + 0.25 * 8.0)


@pytest.mark.parametrize("text,path,weight", [("a/b", "a/b", 1.0), ("a/b:0.25", "a/b", 0.25), ("x:3", "x", 3.0)])
def test_parse_dataset_spec(text, path, weight):
    s = parse_dataset_spec(text)
    assert str(s.path) == path and s.weight == weight


@pytest.mark.parametrize("text", ["a:0", "a:-1", "a:nan", "a:inf", "a:abc"])
def test_bad_weights_rejected(text):
    with pytest.raises(DatasetError, match="positive number"):
        parse_dataset_spec(text)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("mix")
    return {
        "real": write_dataset(root / "real", episodes=1, length=8),
        "wide": write_dataset(root / "wide", episodes=1, length=8, action_dim=3),
        "robot": write_dataset(root / "robot", episodes=1, length=8, robot_type="other_arm"),
        "fps": write_dataset(root / "fps", episodes=1, length=8, fps=20),
        "nostate": write_dataset(root / "nostate", episodes=1, length=8, with_state=False),
    }


def _emb(real):
    from dreamgen.policy.train_setup import resolve_embodiment

    return resolve_embodiment(None, real)


def test_check_mixture_accepts_matching_datasets(datasets):
    emb = _emb(datasets["real"])
    assert emb.action_dim == 2 and emb.state_dim == 2
    _, cams, has_state = check_mixture([DatasetSpec(datasets["real"]), DatasetSpec(datasets["real"], 0.5)], emb)
    assert cams == ["observation.images.cam"] and has_state


@pytest.mark.parametrize("name,error,match", [
    ("wide", EmbodimentError, "action width 3"),
    ("fps", DatasetError, "fps 20"),
    ("nostate", DatasetError, "no 'observation.state'"),
])
def test_check_mixture_rejects_mismatched_neural_dataset(datasets, name, error, match):
    emb = _emb(datasets["real"])
    with pytest.raises(error, match=match):
        check_mixture([DatasetSpec(datasets["real"]), DatasetSpec(datasets[name], 0.5)], emb)


def test_check_mixture_rejects_missing_camera_and_folder(datasets, tmp_path):
    emb = _emb(datasets["real"])
    with pytest.raises(DatasetError, match="missing camera"):
        check_mixture([DatasetSpec(datasets["real"])], emb, video_keys=["observation.images.wrist"])
    with pytest.raises(DatasetError, match="does not exist"):
        check_mixture([DatasetSpec(datasets["real"]), DatasetSpec(tmp_path / "nope")], emb)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no meta/info.json"):
        check_mixture([DatasetSpec(tmp_path / "empty")], emb)


def test_finetune_rejects_bad_input_before_training(datasets, tmp_path):
    from dreamgen.policy.finetune import PolicyTrainConfig, finetune_policy

    out = tmp_path / "run"
    with pytest.raises(EmbodimentError, match="action width 3"):
        finetune_policy(PolicyTrainConfig([DatasetSpec(datasets["real"]), DatasetSpec(datasets["wide"], 0.5)],
                                          out, policy="diffusion", steps=1))
    assert not out.exists()  # nothing written, nothing trained
    with pytest.raises(DreamgenError, match="unknown policy type 'difusion'"):
        finetune_policy(PolicyTrainConfig([DatasetSpec(datasets["real"])], out, policy="difusion", steps=1,
                                          device="cpu"))
    with pytest.raises(DreamgenError, match="groot needs a local GR00T N1.7 base model folder"):
        finetune_policy(PolicyTrainConfig([DatasetSpec(datasets["real"])], out, policy="groot", steps=1))
    with pytest.raises(DreamgenError, match="nothing to resume|cannot resume"):
        finetune_policy(PolicyTrainConfig([DatasetSpec(datasets["real"])], out, policy="diffusion", resume=True))
    with pytest.raises(DreamgenError, match="missing model.safetensors"):
        (tmp_path / "pm").mkdir()
        (tmp_path / "pm" / "config.json").write_text('{"type": "diffusion"}')
        finetune_policy(PolicyTrainConfig([DatasetSpec(datasets["real"])], out, policy="diffusion", steps=1,
                                          pretrained=str(tmp_path / "pm")))
    assert not out.exists()


def test_a_pass_always_holds_a_batch_and_an_empty_loader_fails_loudly():
    # Four tiny episodes and a batch of 128: with drop_last, a pass of the usable frames alone would hold
    # no batch, and the training loop used to spin forever on it.
    from types import SimpleNamespace

    from dreamgen.policy.train_data import cycle_batches as _cycle

    ds = SimpleNamespace(meta=SimpleNamespace(episodes={"dataset_from_index": [0, 20, 40, 55],
                                                        "dataset_to_index": [20, 40, 55, 70]}))
    mix = SimpleNamespace(datasets=[ds], offsets=[0], specs=[SimpleNamespace(weight=1.0)])
    assert len(WeightedMixSampler.for_mixture(mix, drop_n_last_frames=7)) == 70 - 4 * 7
    s = WeightedMixSampler.for_mixture(mix, drop_n_last_frames=7, min_samples=128)
    batches = list(torch.utils.data.BatchSampler(s, batch_size=128, drop_last=True))
    assert len(batches) == 1 and set(batches[0]) <= set(range(70))
    assert not any(13 <= i % 20 < 20 for i in batches[0] if i < 40)  # episode tails stay out
    with pytest.raises(DreamgenError, match="no batch"):
        next(_cycle([]))


def test_check_mixture_no_state_and_layout_not_name(datasets, tmp_path):
    import json
    import shutil

    emb = _emb(datasets["real"])
    # --no-state: a neural dataset without observation.state is fine, and no state is used
    _, _, has_state = check_mixture([DatasetSpec(datasets["real"]), DatasetSpec(datasets["nostate"], 0.5)], emb,
                                    use_state=False)
    assert has_state is False
    # another robot-type name with the same layout mixes (names differ with converters and folders) ...
    _, _, has_state = check_mixture([DatasetSpec(datasets["real"]), DatasetSpec(datasets["robot"], 0.5)], emb)
    assert has_state is True
    # ... and so does a dataset whose provenance names another embodiment
    renamed = tmp_path / "renamed"
    shutil.copytree(datasets["real"], renamed)
    (renamed / "meta" / "dreamgen_provenance.json").write_text(json.dumps({"embodiment": "neural_folder_name"}))
    _, _, has_state = check_mixture([DatasetSpec(datasets["real"]), DatasetSpec(renamed, 0.5)], emb)
    assert has_state is True
