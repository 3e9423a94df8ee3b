#!/usr/bin/env bash
# Issue 22 on one H200: the per-lever speed table (Cosmos-Predict2-2B architecture, 432x768, 93 frames,
# 35 steps, CFG 7, bf16), the Wan2.1 I2V row, and the approximating levers' dream gate on the ToyWorld
# world model. torchao (FP8) travels as a wheel in .whld/ (scripts/gpu/wheels.sh). Each part fits one
# 10-minute call:  bash scripts/gpu/fast.sh A   |   ... B   |   ... C
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -d .whld ] && python3 -m pip install -q --no-index --no-deps --target /root/dgsite .whld/*.whl || true
export PYTHONPATH=/root/dgsite:$PWD PYTHONUNBUFFERED=1
cosmos="--preset cosmos_predict2_2b --device cuda --dtype bf16 --height 432 --width 768 --frames 93 --steps 35 --guidance 7 --repeats 1 --append"
case "${1:-A}" in
  A) python benchmarks/bench_generate.py $cosmos --warmup-steps 3 \
       --variants stock,ours+compile,ours+fp8,ours+faster,ours+compile+faster ;;                 # ~8 min
  B) python benchmarks/bench_generate.py $cosmos \
       --variants stock,ours+fbc,ours+fast,ours+fast+faster,ours+window ;;                        # ~9 min
  C) python benchmarks/bench_wan.py --device cuda --timed-steps 4 --append                        # ~4 min
     for lever in "--cache fbc:0.05" "--cache fbc:0.1" "--cache faster:3" "--cache taylorseer:3" \
                  "--fp8" "--attention-window 1,4,4"; do                                        # ~2 min
       python -m dreamgen.worldmodel.gates checkpoints/toyworld_wm demo_data/toyworld_pick_place \
         "benchmarks/gate_$(echo $lever | tr -dc 'a-z0-9.').json" --num 32 $lever
     done ;;
esac
