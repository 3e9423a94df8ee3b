"""The wheel carries the presets: a non-editable install reads them from any working directory.

A real `pip install .` costs minutes of dependency resolution; a wheel built without its dependencies and
unpacked onto PYTHONPATH is the same file tree pip would install, used with this venv's dependencies.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from dreamgen.presets import KINDS, PRESET_ROOT, list_presets

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The package as a wheel install: built from a copy of the sources (no build/ in the checkout)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for pkg in ("dreamgen", "dreamgenbench"):
        shutil.copytree(REPO / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    wheels = tmp_path_factory.mktemp("wheels")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    str(src), "-w", str(wheels)], check=True, capture_output=True)
    (wheel,) = wheels.glob("dreamgen-*.whl")
    site = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    return site


def test_the_wheel_holds_every_preset(installed):
    for kind in KINDS:
        names = list_presets(kind)
        assert names, f"no {kind} presets in {PRESET_ROOT}"
        for name in names:
            assert (installed / "dreamgen" / "configs" / kind / f"{name}.yaml").is_file(), (kind, name)


def _run_elsewhere(installed: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(installed)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_presets_load_from_another_folder(installed, tmp_path):
    code = (
        "import dreamgen, pathlib; from dreamgen.worldmodel.config import load_preset; "
        "from dreamgen.idm.configuration_idm import resolve_model_config; "
        "from dreamgen.commands.demo import _resolve_config; "
        f"assert pathlib.Path(dreamgen.__file__).is_relative_to({str(installed)!r}), dreamgen.__file__; "
        "p = load_preset('toy'); assert p.train.steps > 0 and p.lora.rank > 0; "
        "assert resolve_model_config('toyworld'); assert _resolve_config('demo_quick').is_file(); print('ok')"
    )
    r = _run_elsewhere(installed, tmp_path, "-c", code)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]


def test_a_preset_reading_command_runs_from_another_folder(installed, tmp_path):
    # The preset is read before the missing --dataset is reported: the error names the dataset, not the preset.
    r = _run_elsewhere(installed, tmp_path, "-m", "dreamgen.cli", "finetune-policy", "-c", "toyworld_diffusion_tiny",
                       "-o", str(tmp_path / "run"))
    assert r.returncode != 0
    assert "pass at least one --dataset" in r.stdout + r.stderr, (r.stdout + r.stderr)[-2000:]
