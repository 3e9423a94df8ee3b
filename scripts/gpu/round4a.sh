#!/usr/bin/env bash
# Round 4a on one GPU, in the background (progress in OUT/progress.log, every step's log under OUT/logs; short
# polling calls keep the machine). Timings only, so the steps run one after another with the GPU to themselves:
#   a. the IDM labelling speed (issue #14; SigLIP-2-large shape, 256 px, random weights, 32 videos x 93 frames,
#      stride 16, batch 128): compiled with 8 and 16 videos per batch, the same with CUDA graphs
#      (--compile-mode reduce-overhead), then one run with a torch.profiler operator table
#      (OUT/bench/idm_profile.txt); the rows in OUT/bench/idm_speed.md;
#   b. Cosmos-Predict2.5 seconds per video (issue #21), 432x768, stock vs ours vs ours+cudnn: the table in
#      OUT/bench/cosmos2_5.md (and the lines --append added to benchmarks/RESULTS.md, which stays on the machine,
#      in OUT/bench/cosmos2_5_results.md);
#   c. the world model v2's autoencoder alone (issue #15: round trip >= 30 dB at every frame index?):
#      scripts/gpu/wm_v2.sh with WM2_VAE_ONLY=1, 32 clips per step, R4A_VAE_MIN minutes (default 6); its
#      results (per-frame round trip JSON/PNG per held-out set, loss.csv, fp16 autoencoder in pack/vae) in OUT/wm2.
# Each step is capped with `timeout`; a failed step is logged ("FAILED ...") and the next one still runs.
# Usage (after scripts/gpu/setup.sh): (setsid nohup bash scripts/gpu/round4a.sh OUT >/dev/null 2>&1 &)
# Knobs: R4A_VAE_MIN (autoencoder minutes), R4A_WM2_S (cap of step c, seconds; default 900 + the VAE minutes),
# R4A_PROFILE_ARGS (the profiled IDM run's extra flags; default: compiled, 8 videos per batch).
set -u
out=${1:?usage: round4a.sh OUT}
out=$(mkdir -p "$out" && cd "$out" && pwd)  # absolute: wm_v2.sh is given OUT/wm2
mkdir -p "$out"/{logs,bench}
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
vae_min=${R4A_VAE_MIN:-6}
wm2_s=${R4A_WM2_S:-$(( 900 + ${vae_min%.*} * 60 + 60 ))}
read -r -a profile_args <<< "${R4A_PROFILE_ARGS:---compile --videos-per-batch 8}"
say "start ($(nvidia-smi --query-gpu=name,memory.used --format=csv,noheader 2>/dev/null))"

say "a. IDM labelling speed"
bench_idm() {  # one bench_idm.py run (extra flags), its table rows appended to OUT/bench/idm_speed.md
  printf '\n`%s`\n\n' "$*" >> "$out/bench/idm_speed.md"
  timeout 300 $py benchmarks/bench_idm.py --model-config siglip2_large --device cuda --frames 93 --size 256 \
    --batch-size 128 --no-record --videos 32 --stride 16 "$@" >> "$out/bench/idm_speed.md" \
    2>> "$out/logs/bench_idm.log" || say "FAILED bench_idm $* (exit $?)"
}
for vpb in 8 16; do bench_idm --compile --videos-per-batch "$vpb"; done
for vpb in 8 16; do bench_idm --compile --compile-mode reduce-overhead --videos-per-batch "$vpb"; done
bench_idm "${profile_args[@]}" --profile "$out/bench/idm_profile.txt"
say "IDM speed measured"

say "b. Cosmos-Predict2.5 speed"
before=$(wc -l < benchmarks/RESULTS.md)
timeout 360 $py benchmarks/bench_generate_cosmos2_5.py --device cuda --sizes 432x768 --variants stock,ours,ours+cudnn \
  --repeats 1 --append > "$out/bench/cosmos2_5.md" 2> "$out/logs/bench_cosmos2_5.log" \
  || say "FAILED bench_generate_cosmos2_5 (exit $?)"
tail -n +"$(( before + 1 ))" benchmarks/RESULTS.md > "$out/bench/cosmos2_5_results.md"
say "Cosmos-Predict2.5 speed measured"

say "c. world model v2: the autoencoder alone (${vae_min} min, cap ${wm2_s} s)"
WM2_VAE_ONLY=1 WM2_VAE_BATCH=32 WM2_VAE_MIN="$vae_min" WM2_WORK=/root/wm2_work \
  timeout "$wm2_s" bash scripts/gpu/wm_v2.sh "$out/wm2" > "$out/logs/wm_v2.log" 2>&1 || say "FAILED wm_v2 (exit $?)"
say "autoencoder trained and checked"
say "done"
