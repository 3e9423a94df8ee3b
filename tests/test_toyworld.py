"""ToyWorld: determinism, experts, success predicates, bad input, evaluation, policy loading."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dreamgen.errors import DreamgenError
from dreamgen.policy.eval import load_toyworld_policy as load_policy
from dreamgen.toyworld import scene as S
from dreamgen.toyworld.env import MAX_STEP, ActionError, ToyWorldEnv, render_initial_frame
from dreamgen.toyworld.evaluate import evaluate, wilson_interval
from dreamgen.toyworld.experts import ExpertPolicy, run_expert_episode
from dreamgen.toyworld.policies import RandomPolicy
from dreamgen.toyworld.tasks import (
    BEHAVIORS,
    CUBE_HALF,
    PLATE_TOP,
    WorldState,
    instruction_for,
    is_success,
    sample_task,
)

SIZE = 24  # small frames keep rendering cheap; the logic is size-independent


@pytest.fixture(scope="module")
def env():
    e = ToyWorldEnv(image_size=SIZE)
    yield e
    e.close()


def _rollout(env, seed, actions, options=None):
    obs, _ = env.reset(seed=seed, options=options)
    images, states = [obs["image"]], [obs["state"]]
    for a in actions:
        obs, *_ = env.step(a)
        images.append(obs["image"])
        states.append(obs["state"])
    return np.stack(images), np.stack(states)


def test_determinism_under_seed(env):
    actions = np.random.default_rng(0).uniform(-1, 1, (8, 4))
    opts = {"behavior": "push", "env": "checker"}
    i1, s1 = _rollout(env, 7, actions, opts)
    other = ToyWorldEnv(image_size=SIZE)
    try:
        i2, s2 = _rollout(other, 7, actions, opts)
        i3, _ = _rollout(other, 8, actions, opts)
    finally:
        other.close()
    assert np.array_equal(i1, i2) and np.array_equal(s1, s2)
    assert not np.array_equal(i1[0], i3[0])  # another seed gives another layout


@pytest.mark.parametrize("behavior", list(BEHAVIORS))
def test_expert_succeeds(env, behavior):
    lengths = []
    for seed in range(2):
        frames, states, actions, success, info = run_expert_episode(env, 100 + seed, {"behavior": behavior})
        assert success, (behavior, seed, info["task"])
        assert frames.shape == (len(actions) + 1, SIZE, SIZE, 3) and states.shape == (len(actions) + 1, 4)
        assert np.all(np.abs(actions) <= 1.0)
        lengths.append(len(actions))
    assert max(lengths) <= 36  # short enough for one 37-frame world-model clip


def test_expert_action_noise_perturbs_states_not_labels(env):
    """DART-style demos: the executed motion is noisy and seeded; the recorded actions are the expert's commands
    (so they no longer reproduce the states) and the expert still succeeds by correcting."""
    options = {"behavior": "pick_place"}
    _, clean_states, clean_actions, _, _ = run_expert_episode(env, 7, options)
    _, states, actions, _, _ = run_expert_episode(env, 7, options, action_noise=0.2)
    _, states2, actions2, _, _ = run_expert_episode(env, 7, options, action_noise=0.2)
    np.testing.assert_array_equal(states, states2)  # seeded
    np.testing.assert_array_equal(actions, actions2)
    np.testing.assert_array_equal(actions[0], clean_actions[0])  # same start, same first command
    assert not np.allclose(states[1], clean_states[1])  # but it did not go where it was told
    moved = (states[1:, :3] - states[:-1, :3]) / MAX_STEP
    assert np.abs(moved - actions[:, :3]).max() > 0.05  # the labels are the commands, not the motion
    assert np.all(np.abs(actions) <= 1.0)
    wins = [run_expert_episode(env, s, options, action_noise=0.2)[3] for s in range(20, 26)]
    assert sum(wins) >= 3, wins  # mostly recovers (collect replaces the failures)


def _go_to(env, target, grip):
    """Step towards `target` at full speed until reached; returns the env's held object."""
    for _ in range(40):
        delta = (np.asarray(target) - env.ee) / MAX_STEP
        env.step(np.array([*np.clip(delta, -1, 1), grip]))
        if np.allclose(env.ee, target, atol=1e-6):
            break
    return env.held


def test_grasp_forgives_closing_a_step_early(env):
    env.reset(seed=3, options={"behavior": "lift"})
    obj = env.object_position(env.task_params["object"])
    grasp_z = obj[2] - CUBE_HALF + 0.006
    _go_to(env, [obj[0], obj[1], grasp_z + 0.06], -1)
    _go_to(env, [obj[0], obj[1], grasp_z + MAX_STEP], -1)
    env.step(np.array([0.0, 0.0, -1.0, 1.0]))  # the close command comes while still a step above
    assert env.held is None and 0 < env.closure < 1
    env.step(np.array([0.0, 0.0, 0.0, 1.0]))  # the fingers are still closing: the grasp takes
    assert env.held == env.task_params["object"]
    # fully closed on nothing, the gripper never picks anything up afterwards
    env.reset(seed=3, options={"behavior": "lift"})
    _go_to(env, [obj[0] + 0.1, obj[1], grasp_z], 1)
    assert env.closure == 1.0 and env.held is None
    assert _go_to(env, [obj[0], obj[1], grasp_z], 1) is None


def test_time_limit_truncates(env):
    env.reset(seed=0, options={"behavior": "lift"})
    hover = np.array([0.0, 0.0, 0.0, -1.0])
    for _ in range(env.time_limit):
        _, reward, terminated, truncated, info = env.step(hover)
        assert not terminated and reward == 0.0
    assert truncated and info["step"] == BEHAVIORS["lift"].max_steps


def _state(**objects):
    base = {name: np.array([0.2 - 0.1 * i, -0.1, CUBE_HALF]) for i, name in enumerate(S.OBJECT_NAMES)}
    base.update({k.replace("_", " "): np.asarray(v, float) for k, v in objects.items()})
    return WorldState(objects=base, plate=np.array([0.0, 0.1, 0.0]), bin=np.array([-0.15, 0.05, 0.0]))


def test_success_predicates_true_and_false():
    on_plate = [0.01, 0.1, PLATE_TOP + CUBE_HALF]
    p = {"object": "red cube"}
    assert is_success("pick_place", _state(red_cube=on_plate), p)
    assert not is_success("pick_place", _state(red_cube=[0.08, 0.1, PLATE_TOP + CUBE_HALF]), p)  # off the rim
    held = _state(red_cube=on_plate)
    held.held = "red cube"
    assert not is_success("pick_place", held, p)  # still in the hand
    assert not is_success("pick_place", _state(red_cube=[0.0, 0.1, 0.09]), p)  # hovering above it

    assert is_success("put_in_bin", _state(red_cube=[-0.14, 0.06, 0.025]), p)
    assert not is_success("put_in_bin", _state(red_cube=[-0.14, 0.06, 0.07]), p)  # above the rim
    assert not is_success("put_in_bin", _state(red_cube=[0.0, 0.1, 0.025]), p)

    push = {"object": "red cube", "direction": "left", "start": [0.2, -0.1, CUBE_HALF]}
    assert is_success("push", _state(red_cube=[0.11, -0.1, CUBE_HALF]), push)
    assert not is_success("push", _state(red_cube=[0.15, -0.1, CUBE_HALF]), push)  # only 5 cm
    assert not is_success("push", _state(red_cube=[0.29, -0.1, CUBE_HALF]), push)  # wrong way
    assert not is_success("push", _state(red_cube=[0.11, -0.1, 0.08]), push)  # lifted, not pushed

    stack = {"object": "red cube", "target": "green cube"}
    g = [0.1, -0.1, CUBE_HALF]
    assert is_success("stack", _state(red_cube=[0.105, -0.1, 3 * CUBE_HALF]), stack)
    assert not is_success("stack", _state(red_cube=[0.14, -0.1, 3 * CUBE_HALF], green_cube=g), stack)
    assert not is_success("stack", _state(red_cube=[0.1, -0.1, 3 * CUBE_HALF + 0.03], green_cube=g), stack)

    lift = {"object": "blue cube"}
    assert is_success("lift", _state(blue_cube=[0.0, -0.1, CUBE_HALF + 0.16]), lift)
    assert not is_success("lift", _state(blue_cube=[0.0, -0.1, CUBE_HALF + 0.11]), lift)  # pick_place's carry height

    nxt = {"object": "red cube", "target": "green cube", "side": "right"}
    assert is_success("next_to", _state(red_cube=[0.17, -0.1, CUBE_HALF]), nxt)
    assert not is_success("next_to", _state(red_cube=[0.03, -0.1, CUBE_HALF]), nxt)  # on the left
    assert not is_success("next_to", _state(red_cube=[0.17, -0.03, CUBE_HALF]), nxt)  # too far back
    assert not is_success("next_to", _state(red_cube=[0.25, -0.1, CUBE_HALF]), nxt)  # too far away


def test_instructions_and_sampling():
    assert instruction_for("pick_place", {"object": "red cube"}) == "pick up the red cube and place it on the plate"
    assert instruction_for("push", {"object": "blue cube", "direction": "left"}) == "push the blue cube to the left"
    assert instruction_for("next_to", {"object": "red cube", "target": "green cube", "side": "left"}) == \
        "put the red cube to the left of the green cube"
    for b in BEHAVIORS:
        layout, params = sample_task(b, np.random.default_rng(3))
        assert params["object"] in layout.objects
        names = list(layout.objects)
        for i, a in enumerate(names):  # objects never start overlapping
            for c in names[i + 1:]:
                assert np.linalg.norm(layout.objects[a][:2] - layout.objects[c][:2]) >= 0.07


def test_bad_input_errors(env):
    with pytest.raises(DreamgenError, match="valid: pick_place, put_in_bin"):
        env.reset(seed=0, options={"behavior": "juggle"})
    with pytest.raises(DreamgenError, match="valid: default, dark_table"):
        ToyWorldEnv(env="moon", image_size=SIZE)
    with pytest.raises(DreamgenError, match="arm_style"):
        env.reset(seed=0, options={"arm_style": "tentacle"})
    with pytest.raises(DreamgenError, match="unknown ToyWorld reset option"):
        env.reset(seed=0, options={"colour": "red"})
    env.reset(seed=0, options={"behavior": "pick_place", "env": "default", "arm_style": "default"})
    with pytest.raises(ActionError, match="non-finite"):
        env.step(np.array([0.0, np.nan, 0.0, 1.0]))
    with pytest.raises(ActionError, match="shape"):
        env.step(np.zeros(3))
    with pytest.raises(ValueError):  # ActionError is also a ValueError for gym-style callers
        env.step([[0, 0, 0, 0]])


def test_missing_gl_error_says_how_to_fix(monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("Cannot initialize a EGL device display")

    monkeypatch.setattr(S.mujoco, "Renderer", broken)
    with pytest.raises(DreamgenError, match="MUJOCO_GL=egl.*apt-get install libegl1|apt-get install libegl1"):
        S.make_renderer(S.build_model(64), 64, 64)


def test_initial_frame_matches_reset_and_styles_differ(env):
    img, instruction = render_initial_frame("stack", "dark_table", seed=5, size=SIZE)
    obs, info = env.reset(seed=5, options={"behavior": "stack", "env": "dark_table", "arm_style": "default"})
    assert np.array_equal(img, obs["image"]) and instruction == info["instruction"]
    alt, _ = render_initial_frame("stack", "dark_table", seed=5, size=SIZE, arm_style="blue_box")
    assert not np.array_equal(img, alt)
    big, _ = render_initial_frame("stack", "dark_table", seed=5, size=(48, 40))
    assert big.shape == (48, 40, 3)
    looks = [render_initial_frame("stack", e, seed=5, size=SIZE)[0] for e in S.ENVIRONMENTS]
    assert len({x.tobytes() for x in looks}) == len(S.ENVIRONMENTS)


def test_wilson_interval():
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-3)
    lo, hi = wilson_interval(10, 10)
    assert lo == pytest.approx(0.7225, abs=1e-3) and hi == 1.0
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-3) and hi == pytest.approx(0.7634, abs=1e-3)


def test_eval_expert_full_random_zero(tmp_path):
    rep = evaluate(ExpertPolicy(), ["pick_place", "push"], ["evening"], episodes=2, seed=1,
                   out_dir=tmp_path, save_videos=1, image_size=SIZE, progress=False)
    assert rep["overall"]["success_rate"] == 1.0
    assert all(r["successes"] == 2 for r in rep["results"])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["overall"]["successes"] == 4 and len(saved["results"]) == 2
    assert len(list((tmp_path / "rollouts").glob("*_success.mp4"))) == 2
    rnd = evaluate(RandomPolicy(0), ["pick_place", "stack"], ["default"], episodes=3, image_size=SIZE, max_steps=25,
                   progress=False)
    assert rnd["overall"]["success_rate"] == 0.0
    assert rnd["results"][0]["ci95"][1] < 0.6


def test_load_policy(tmp_path):
    assert isinstance(load_policy("expert"), ExpertPolicy)
    assert isinstance(load_policy("random"), RandomPolicy)
    with pytest.raises(DreamgenError, match="'expert', 'random'"):
        load_policy(str(tmp_path / "nope"))

    class Still:
        def reset(self):
            pass

        def act(self, observation):
            assert observation["image"].dtype == np.uint8 and observation["state"].shape == (4,)
            assert observation["instruction"].startswith("lift")
            return np.zeros(4, np.float32)

    # any object with reset()/act() is a policy to the evaluator (no registration)
    rep = evaluate(Still(), ["lift"], ["default"], episodes=1, image_size=SIZE, progress=False)
    assert rep["overall"]["success_rate"] == 0.0 and rep["results"][0]["mean_steps"] == BEHAVIORS["lift"].max_steps


def test_cli_default_image_size_matches_env():
    from dreamgen.commands import toyworld as cmd
    from dreamgen.toyworld import env as env_mod

    assert cmd.IMAGE_SIZE == env_mod.IMAGE_SIZE
