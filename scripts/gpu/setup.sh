#!/usr/bin/env bash
# Set-up on the lent GPU machine (no network there): system GL libraries for MuJoCo's EGL and the
# wheels the machine's image lacks, carried in .gl/, .whla/, .whlb/ (see benchmarks/RESULTS.md).
# Usage: source scripts/gpu/setup.sh [a|b]   (a: wheels part 1, b: part 2 + GL; the 64 MiB carry limit splits them)
set -e
part=${1:-}
if [ "$part" = b ] || [ -z "$part" ]; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
fi
for d in $( [ "$part" = a ] && echo .whla; [ "$part" = b ] && echo .whlb; [ -z "$part" ] && echo .whla .whlb ); do
  [ -d "$d" ] && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /root/dgsite "$d"/*.whl
done
export PYTHONPATH=/root/dgsite:$PWD PYTHONUNBUFFERED=1 MUJOCO_GL=egl
export __EGL_VENDOR_LIBRARY_FILENAMES=${__EGL_VENDOR_LIBRARY_FILENAMES:-/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json}
[ -f "$__EGL_VENDOR_LIBRARY_FILENAMES" ] || unset __EGL_VENDOR_LIBRARY_FILENAMES
set +e
