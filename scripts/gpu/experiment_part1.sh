#!/usr/bin/env bash
# DreamGen experiment, part 1 on one GPU: real demos, prior videos, world model, dreams, IDM, judge,
# neural datasets. Runs in the background (setsid) so that short polling calls keep the machine.
# Usage (after scripts/gpu/setup.sh): bash scripts/gpu/experiment_part1.sh OUT
out=${1:-/root/exp}
mkdir -p "$out"
python3 -m dreamgen.cli experiment --config toyworld --out "$out" \
  --step real --step prior --step world_model --step dreams --step idm --step judge --step neural \
  > "$out/part1.log" 2>&1
echo "exit $?" >> "$out/part1.log"
