#!/usr/bin/env bash
# Round 3 on one GPU, in the background (progress in OUT/progress.log; short polling calls keep the machine):
#   0. the IDM labelling speed (SigLIP-2-large shape, 256 px, random weights): eager vs compiled, strides 1/8/16;
#   1. collect pick_place/default demos N = 25, 50, 100, 200 (seed 0: each N is the first N of 200);
#   2. train (all at once): the real-only learning curve with instruction FiLM (toyworld_diffusion preset) and
#      a control at N=200 without FiLM; each run bounded by R3_TRAIN_S seconds (checkpoints every R3_SAVE
#      steps, so a cut run is evaluated at its last saved step and the log says which);
#   3. evaluate (parallel): 100 episodes per cell at eval-policy's held-out seeds (base 1000), the grounding
#      probe (benchmarks/probe_policy_grounding.py) on the N=200 pair;
#   4. pack the FiLM policies (fp16) and a results JSON.
# Usage (after scripts/gpu/setup.sh): setsid bash scripts/gpu/round3.sh OUT >/dev/null 2>&1 &
# R3_TINY=1 runs the same steps at smoke-test size on a CPU.
set -u
out=${1:?usage: round3.sh OUT}
mkdir -p "$out"/{data,logs,eval,pack,bench}
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
if [ "${R3_TINY:-0}" = 1 ]; then
  ns=(4 6); steps=4; save=2; train_s=600; eval_n=2; dev=cpu; dg=".venv/bin/dreamgen"; py=.venv/bin/python
  preset=toyworld_diffusion_tiny; batch=8; probe_layouts=1
else
  ns=(25 50 100 200); steps=${R3_STEPS:-6000}; save=${R3_SAVE:-1000}; train_s=${R3_TRAIN_S:-780}; eval_n=100
  dev=cuda; preset=toyworld_diffusion; batch=${R3_BATCH:-256}; probe_layouts=10
fi
big=${ns[-1]}

if [ "$dev" = cuda ]; then  # first, while the GPU has nothing else to do (collection is CPU only)
  bench() { $py benchmarks/bench_idm.py --model-config siglip2_large --device cuda --frames 93 --videos 8 --size 256 \
    --batch-size 128 --no-record "$@" >> "$out/bench/idm_speed.md" 2>> "$out/logs/bench_idm.log" \
    || say "FAILED bench_idm $*"; }
  (bench --stride 1; bench --stride 1 --compile; bench --stride 8 --compile; bench --stride 16 --compile
   say "idm speed measured") &
fi
say "collect"
pids=()
for n in "${ns[@]}"; do
  $dg toyworld collect --behaviors pick_place --envs default --episodes "$n" --seed 0 --out "$out/data/pp$n" \
    > "$out/logs/collect_pp$n.log" 2>&1 || say "FAILED collect $n" &
  pids+=($!)
done
wait "${pids[@]}"  # not the IDM benchmark

say "train"
sed 's/^vision_instruction_film: true.*/vision_instruction_film: false/' "dreamgen/configs/policy/$preset.yaml" \
  > "$out/preset_nofilm.yaml"
train() { timeout "$train_s" $dg finetune-policy -c "$1" -d "$out/data/pp$2" -o "$out/pol_$3" --device "$dev" \
  --steps "$steps" --batch-size "$batch" --save-every "$save" > "$out/logs/train_$3.log" 2>&1 \
  || say "train $3 stopped (exit $?; evaluated at its last saved step)"; }
for n in "${ns[@]}"; do train "$preset" "$n" "n$n" & done
train "$out/preset_nofilm.yaml" "$big" "n${big}_nofilm" &
wait
say "policies trained"

say "evaluate"
for n in "${ns[@]}"; do ev "n$n" pick_place default & done
ev "n${big}_nofilm" pick_place default &
ev_held_out
for p in "n$big" "n${big}_nofilm"; do
  MUJOCO_GL=egl $py benchmarks/probe_policy_grounding.py "$out/pol_$p" --layouts "$probe_layouts" \
    > "$out/eval/probe_$p.json" 2> "$out/logs/probe_$p.log" || say "FAILED probe $p" &
done
wait

say "pack"
for n in "${ns[@]}"; do
  $py scripts/gpu/pack_checkpoint.py "$out/pol_n$n" "$out/pack/pol_n$n" >> "$out/logs/pack.log" 2>&1
done
$py scripts/gpu/summarize_v2.py "$out" > "$out/summary.json" 2>> "$out/logs/pack.log"
say "done"
