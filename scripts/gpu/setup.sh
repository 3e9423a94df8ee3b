#!/usr/bin/env bash
# Set-up on the lent GPU machine (no network there): system GL libraries for MuJoCo's EGL and the
# wheels the machine's image lacks, carried in .gl/ and wheel folders (.whla/: diffusers, lerobot,
# datasets, draccus, gymnasium, ...; .whlb/: mujoco, pyopengl, glfw; .whlc/: av). The 64 MiB carry
# limit (working tree included) means several calls, each carrying some folders and installing them:
#   source scripts/gpu/setup.sh .whlc          # call 1
#   source scripts/gpu/setup.sh .whla .whlb    # call 2 (also unpacks .gl/ when carried)
# With no argument: every folder present.
set -e
dirs=("$@")
[ ${#dirs[@]} -eq 0 ] && dirs=(.whla .whlb .whlc)
if [ -d .gl ]; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
fi
for d in "${dirs[@]}"; do
  [ -d "$d" ] && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /root/dgsite "$d"/*.whl
done
export PYTHONPATH=/root/dgsite:$PWD PYTHONUNBUFFERED=1 MUJOCO_GL=egl
export __EGL_VENDOR_LIBRARY_FILENAMES=${__EGL_VENDOR_LIBRARY_FILENAMES:-/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json}
[ -f "$__EGL_VENDOR_LIBRARY_FILENAMES" ] || unset __EGL_VENDOR_LIBRARY_FILENAMES
set +e
