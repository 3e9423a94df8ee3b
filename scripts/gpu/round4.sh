#!/usr/bin/env bash
# Round 4 on one GPU, in the background (progress in OUT/progress.log, logs under OUT/logs; short polling calls
# keep the machine):
#   a. the IDM labelling speed (issue #14), with the GPU to itself: SigLIP-2-large shape, 256 px, random
#      weights, 32 videos x 93 frames, stride 16, batch 128; compiled vs CUDA graphs (reduce-overhead), 8 and 16
#      videos per batch, and one torch.profiler table (rows in OUT/bench/idm_speed.md);
#   b. at once: Cosmos-Predict2.5 seconds per video (issue #21, GPU; interleaved variants in one process, so a
#      small neighbour slows stock and ours alike) | collect pick_place/default demos N = 25..200 (CPU) |
#      with R4_PRETRAIN_TRUNK=1, pretrain a fresh image trunk (`dreamgen toyworld pretrain-trunk`: rendering on
#      the CPU, a minute of GPU) instead of the preset's checkpoints/toyworld_trunk;
#   c. train the real-only learning curve with the `toyworld_diffusion` preset (frozen pretrained trunk, grounded
#      keypoints), all N at once, each bounded by R4_TRAIN_S (a cut run is evaluated at its last saved step);
#   d. evaluate: 100 episodes per cell at eval-policy's held-out seeds, the largest N on the held-out behaviors
#      and environments too; the grounding probes (benchmarks/probe_policy_grounding.py) on the largest N;
#   e. pack the policies (fp16) and the trunk into OUT/pack, a summary JSON.
# Usage (after scripts/gpu/setup.sh): (setsid nohup bash scripts/gpu/round4.sh OUT >/dev/null 2>&1 &)
# Knobs: R4_PRETRAIN_TRUNK=1 (a fresh trunk in b. instead of checkpoints/toyworld_trunk), R4_SKIP_BENCH=1 (skip a. and the Cosmos bench), R4_SKIP_IDM=1 (skip a. only), R4_PRESET_EXTRA (YAML lines
# appended to the policy preset, e.g. vision_freeze_trunk / vision_attended_keypoints / vision_grounded_keypoints), R4_COSMOS_AT_EVAL=1 (the Cosmos bench during d.), R4_TRAIN_S, R4_STEPS, R4_TRUNK_EPISODES, R4_TRUNK_STEPS.
set -u
out=${1:?usage: round4.sh OUT}
out=$(mkdir -p "$out" && cd "$out" && pwd)
mkdir -p "$out"/{data,logs,eval,pack,bench}
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ns=(25 50 100 200); big=200; dev=cuda; eval_n=100
steps=${R4_STEPS:-5000}; train_s=${R4_TRAIN_S:-480}; save=1000
say "start ($(nvidia-smi --query-gpu=name,memory.used --format=csv,noheader 2>/dev/null))"

if [ "${R4_SKIP_BENCH:-0}" != 1 ] && [ "${R4_SKIP_IDM:-0}" != 1 ]; then
  say "a. IDM labelling speed"
  bench_idm() {
    printf '\n`%s`\n\n' "$*" >> "$out/bench/idm_speed.md"
    timeout 300 $py benchmarks/bench_idm.py --model-config siglip2_large --device cuda --frames 93 --size 256 \
      --batch-size 128 --no-record --videos 32 --stride 16 "$@" >> "$out/bench/idm_speed.md" \
      2>> "$out/logs/bench_idm.log" || say "FAILED bench_idm $* (exit $?)"
  }
  bench_idm --compile --videos-per-batch 8
  bench_idm --compile --compile-mode reduce-overhead --videos-per-batch 8
  bench_idm --compile --compile-mode reduce-overhead --videos-per-batch 16 --profile "$out/bench/idm_profile.txt"
  say "IDM speed measured"
fi
if [ "${R4_SKIP_BENCH:-0}" != 1 ]; then
  (before=$(wc -l < benchmarks/RESULTS.md)
   timeout 540 $py benchmarks/bench_generate_cosmos2_5.py --device cuda --sizes 432x768 \
     --variants stock,ours,ours+cudnn --repeats 1 --append > "$out/bench/cosmos2_5.md" 2> "$out/logs/bench_cosmos2_5.log" \
     || say "FAILED bench_generate_cosmos2_5 (exit $?)"
   tail -n +"$(( before + 1 ))" benchmarks/RESULTS.md > "$out/bench/cosmos2_5_results.md"
   say "Cosmos-Predict2.5 speed measured") &
fi

say "b. collect + pretrain the trunk"
for n in "${ns[@]}"; do
  $dg toyworld collect --behaviors pick_place --envs default --episodes "$n" --seed 0 --out "$out/data/pp$n" \
    > "$out/logs/collect_pp$n.log" 2>&1 || say "FAILED collect $n" &
done
cp dreamgen/configs/policy/toyworld_diffusion.yaml "$out/preset_trunk.yaml"  # its trunk: checkpoints/toyworld_trunk
if [ "${R4_PRETRAIN_TRUNK:-0}" = 1 ]; then  # a fresh trunk instead of the committed one
  timeout 600 $dg toyworld pretrain-trunk -o "$out/trunk" --episodes "${R4_TRUNK_EPISODES:-30}" \
    --steps "${R4_TRUNK_STEPS:-3000}" --device cuda --workers 12 > "$out/logs/trunk.log" 2>&1 || say "FAILED trunk"
  sed -i "s|^vision_pretrained_trunk:.*|vision_pretrained_trunk: $out/trunk|" "$out/preset_trunk.yaml"
fi
wait  # the demos (and the Cosmos bench)
say "collected, trunk: $(tr -d '\n ' < "$out/trunk/trunk.json" 2>/dev/null | grep -o '"median_px":{[^}]*}')"

say "c. train"
[ -n "${R4_PRESET_EXTRA:-}" ] && printf '%s\n' "$R4_PRESET_EXTRA" >> "$out/preset_trunk.yaml"
train() { timeout "$train_s" $dg finetune-policy -c "$out/preset_trunk.yaml" -d "$out/data/pp$1" -o "$out/pol_n$1" \
  --device "$dev" --steps "$steps" --batch-size 256 --save-every "$save" > "$out/logs/train_n$1.log" 2>&1 \
  || say "train n$1 stopped (exit $?; evaluated at its last saved step)"; }
for n in "${ns[@]}"; do train "$n" & done
wait
say "policies trained"

say "d. evaluate"
if [ "${R4_COSMOS_AT_EVAL:-0}" = 1 ]; then  # beside the (CPU-bound) evaluation when device time is short
  timeout 420 $py benchmarks/bench_generate_cosmos2_5.py --device cuda --sizes 432x768 --variants stock,ours,ours+cudnn \
    --repeats 1 > "$out/bench/cosmos2_5.md" 2> "$out/logs/bench_cosmos2_5.log" || say "FAILED cosmos bench (exit $?)" &
fi
for n in "${ns[@]}"; do ev "n$n" pick_place default & done
ev_held_out
MUJOCO_GL=egl $py benchmarks/probe_policy_grounding.py "$out/pol_n$big" --layouts 10 \
  > "$out/eval/probe_n$big.json" 2> "$out/logs/probe_n$big.log" || say "FAILED probe" &
MUJOCO_GL=egl $py benchmarks/probe_policy_grounding.py "$out/pol_n$big" --feature-seed 0 \
  > "$out/eval/features_n$big.json" 2> "$out/logs/features_n$big.log" || say "FAILED feature probe" &
wait
say "evaluated"

say "e. pack"
for n in "${ns[@]}"; do
  $py scripts/gpu/pack_checkpoint.py "$out/pol_n$n" "$out/pack/pol_n$n" >> "$out/logs/pack.log" 2>&1
done
[ -d "$out/trunk" ] && cp -r "$out/trunk" "$out/pack/trunk"
$py scripts/gpu/summarize_v2.py "$out" > "$out/summary.json" 2>> "$out/logs/pack.log"
say "done"
