import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from dreamgen.embodiments import Embodiment, builtin_names, get_embodiment
from dreamgen.embodiments.registry import BUILTIN_DIR
from dreamgen.errors import EmbodimentError

REFERENCE_DIMS = {"gr1": (44, 44), "franka": (14, 28), "so100": (6, 6), "robocasa": (53, 12)}


@pytest.mark.parametrize("name", sorted(REFERENCE_DIMS))
def test_builtin_carries_reference_layout_and_stats(name):
    e = get_embodiment(name)
    assert (e.state_dim, e.action_dim) == REFERENCE_DIMS[name]
    ref = json.loads((BUILTIN_DIR / name / "stats.json").read_text())
    assert e.stats["action"]["mean"] == ref["action"]["mean"]
    assert len(e.stats["action"]["q99"]) == e.action_dim
    assert e.video_keys and e.video_key.startswith("observation.images.")


@pytest.mark.parametrize("name", builtin_names())
def test_builtin_round_trip(tmp_path, name):
    e = get_embodiment(name)
    e.save(tmp_path / name)
    back = get_embodiment(tmp_path / name)
    assert back.to_dict() == e.to_dict()


@pytest.mark.parametrize("alias,name", [("gr1_unified", "gr1"), ("GR1", "gr1"),
                                        ("robocasa_panda_omron", "robocasa"), ("so101", "so100")])
def test_aliases_resolve(alias, name):
    assert get_embodiment(alias).name == name


def test_unknown_name_suggests_close_ones():
    with pytest.raises(EmbodimentError, match="did you mean gr1"):
        get_embodiment("gr2")
    with pytest.raises(EmbodimentError, match="does not exist"):
        get_embodiment("missing/robot.yaml")


def _user_robot():
    return {
        "name": "myarm", "robot_type": "myarm", "fps": 15, "video_keys": ["observation.images.top"],
        "modality": {"state": {"joints": {"start": 0, "end": 5}},
                     "action": {"joints": {"start": 0, "end": 5, "absolute": False}, "grip": {"start": 5, "end": 6}}},
        "stats": {"action": {"q01": [-1.0] * 6, "q99": [1.0] * 6, "min": [-2.0] * 6, "max": [2.0] * 6,
                             "mean": [0.0] * 6, "std": [1.0] * 6}},
        "idm": {"observation_offsets": [0, 4], "action_horizon": 4},
    }


def test_user_yaml_file_no_code_change(tmp_path):
    f = tmp_path / "myarm.yaml"
    f.write_text(yaml.safe_dump(_user_robot()))
    e = get_embodiment(f)
    assert (e.name, e.state_dim, e.action_dim, e.idm.window) == ("myarm", 5, 6, 5)
    a = np.array([[-1.0, 0, 1, 0.5, -0.5, 0]], np.float32)
    assert np.allclose(e.unnormalize_action(e.normalize_action(a)), a)
    assert np.allclose(e.normalize_action(a), a)  # q01/q99 = -1/1 is the identity


def test_folder_with_modality_and_stats_and_new_embodiment_tag(tmp_path):
    meta = tmp_path / "ds" / "meta"
    meta.mkdir(parents=True)
    robot = _user_robot()
    (meta / "modality.json").write_text(json.dumps(
        {**robot["modality"], "video": {"top": {"original_key": "observation.images.top"}}}))
    (meta / "stats.json").write_text(json.dumps(robot["stats"]))
    (meta / "info.json").write_text(json.dumps({"fps": 12, "robot_type": "myarm_v2", "features": {}}))
    e = get_embodiment(meta)
    assert (e.fps, e.robot_type, e.video_keys, e.name) == (12, "myarm_v2", ["observation.images.top"], "ds")
    assert get_embodiment("new_embodiment", dataset=tmp_path / "ds").to_dict() == e.to_dict()
    with pytest.raises(EmbodimentError, match="user-defined robot"):
        get_embodiment("new_embodiment")


def test_bad_files_name_the_problem(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "modality.json").write_text("{not json")
    with pytest.raises(EmbodimentError, match=r"modality.json: invalid JSON"):
        get_embodiment(bad)
    robot = _user_robot()
    robot["modality"]["action"]["grip"] = {"start": 6, "end": 5}
    f = tmp_path / "r.yaml"
    f.write_text(yaml.safe_dump(robot))
    with pytest.raises(EmbodimentError, match="start < end"):
        get_embodiment(f)
    robot = _user_robot()
    robot["colour"] = "red"
    f.write_text(yaml.safe_dump(robot))
    with pytest.raises(EmbodimentError, match="unknown embodiment field"):
        get_embodiment(f)


def test_width_check():
    e = get_embodiment("so100")
    e.check_widths(6, 6, "x")
    with pytest.raises(EmbodimentError, match="action width 7 disagrees"):
        e.check_widths(6, 7, "data.parquet")


def test_from_dict_requires_fields():
    with pytest.raises(EmbodimentError, match="missing required"):
        Embodiment.from_dict({"name": "x"})


def test_cli_list_show_and_unknown_exit_code():
    run = lambda *a: subprocess.run([sys.executable, "-m", "dreamgen.cli", *a], capture_output=True, text=True)  # noqa: E731
    r = run("embodiments", "list")
    assert r.returncode == 0 and "gr1_unified" in r.stdout and "robocasa" in r.stdout
    r = run("embodiments", "show", "so100")
    assert r.returncode == 0 and json.loads(r.stdout)["modality"]["action"]["main_gripper"]["end"] == 6
    r = run("embodiments", "show", "frankaa")
    assert r.returncode == 2 and "did you mean franka" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("dreamgen ")
