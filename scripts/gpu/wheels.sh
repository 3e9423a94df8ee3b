#!/usr/bin/env bash
# Download (here, with network) the wheels the GPU machine's image lacks, into git-ignored folders that
# `run` carries: .whla/ (LeRobot, diffusers, datasets, ... small), .whlb/ (MuJoCo + GL bindings), .whlc/ (PyAV,
# ~40 MB: it travels alone). Then on the GPU machine: `source scripts/gpu/setup.sh .whlc`, later `... .whla .whlb`.
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${PYTHON:-.venv/bin/python}
dl() { "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d "$1" "${@:2}"; }
ver() { "$py" -c "import importlib.metadata as m; print(m.version('$1'))"; }
pins() { for p in "$@"; do echo "$p==$(ver "$p")"; done; }
dl .whla $(pins lerobot diffusers datasets draccus gymnasium termcolor dill multiprocess mergedeep toml \
  farama-notifications typing-inspect mypy-extensions jsonlines)
dl .whlb $(pins mujoco glfw pyopengl)
dl .whlc $(pins av)
dl .whld "torchao>=0.13"   # FP8 linears (dreamgen[fast]); pick the release matching the GPU image's torch
du -sh .whla .whlb .whlc .whld
