#!/usr/bin/env bash
# ToyWorld v2 on one GPU: the real-only learning curve (diffusion policy, pick_place/default, N demos) and
# the state IDM's open-loop replay on held-out expert episodes, every step a `dreamgen` command.
#   1. collect (parallel): pick_place/default N = 25, 50, 100, 200 (seed 0; each N is the first N of 200),
#      IDM training data (300 episodes, seed 1), held-out sets (50 episodes each, seed 900): pick_place in
#      default + 3 new environments, put_in_bin / push / lift in default;
#   2. train (all at once on the GPU): 4 policies (toyworld_diffusion), the N=200 one again with the trunk
#      cut after layer3 instead of layer2, and the state IDM;
#   3. evaluate (parallel): 100 episodes per cell at eval-policy's held-out seeds (1000); IDM replay per set;
#   4. pack: fp16 policy folders + the IDM checkpoint, results as JSON.
# Runs in the background (setsid) so short polling calls keep the machine; progress in OUT/progress.log.
# Usage (after scripts/gpu/setup.sh): setsid bash scripts/gpu/toyworld_v2.sh OUT >/dev/null 2>&1 &
# TW2_TINY=1 runs the same steps at smoke-test size on a CPU.
set -u
out=${1:?usage: toyworld_v2.sh OUT}
mkdir -p "$out"/{data,logs,eval,idm_eval,pack}
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
if [ "${TW2_TINY:-0}" = 1 ]; then
  ns=(4 6); idm_n=6; held_n=3; steps=4; idm_steps=4; eval_n=2; dev=cpu; dg=".venv/bin/dreamgen"; py=.venv/bin/python
else
  ns=(25 50 100 200); idm_n=300; held_n=50; steps=${TW2_STEPS:-4500}; idm_steps=${TW2_IDM_STEPS:-3000}; eval_n=100; dev=cuda
fi
big=${ns[-1]}

say "collect"
collect() { $dg toyworld collect --behaviors "$1" --envs "$2" --episodes "$3" --seed "$4" --out "$out/data/$5" \
  > "$out/logs/collect_$5.log" 2>&1 || say "FAILED collect $5"; }
for n in "${ns[@]}"; do collect pick_place default "$n" 0 "pp$n" & done
collect pick_place default "$idm_n" 1 idm_train &
collect pick_place default "$held_n" 900 held_pick_place_default &
for e in dark_table checker evening; do collect pick_place "$e" "$held_n" 900 "held_pick_place_$e" & done
for b in put_in_bin push lift; do collect "$b" default "$held_n" 900 "held_${b}_default" & done
wait

say "train"
preset=toyworld_diffusion; [ "${TW2_TINY:-0}" = 1 ] && preset=toyworld_diffusion_tiny
sed 's/^vision_trunk_layers: 2/vision_trunk_layers: 3/' "dreamgen/configs/policy/$preset.yaml" > "$out/preset_l3.yaml"
train() { $dg finetune-policy -c "$1" -d "$out/data/pp$2" -o "$out/pol_$3" --device "$dev" --steps "$steps" \
  --batch-size "${TW2_BATCH:-128}" --save-every "$steps" > "$out/logs/train_$3.log" 2>&1 || say "FAILED train $3"; }
for n in "${ns[@]}"; do train "$preset" "$n" "n$n" & done
[ "${TW2_L3:-0}" = 1 ] && train "$out/preset_l3.yaml" "$big" "n${big}_l3" &
$dg idm-train --dataset-path "$out/data/idm_train" --out "$out/idm" -e toyworld --model-config toyworld_state \
  --batch-size 64 --steps "$idm_steps" --save-every "$idm_steps" --lr 1e-3 --val-fraction 0.05 \
  > "$out/logs/train_idm.log" 2>&1 || say "FAILED idm"
say "idm trained"
for d in "$out"/data/held_*; do
  name=$(basename "$d")
  $dg idm-eval --checkpoint "$out/idm" --dataset "$d" --replay --device "$dev" > "$out/idm_eval/$name.json" \
    2> "$out/logs/idm_eval_$name.log" || say "FAILED idm-eval $name" &
done
wait
say "policies trained"

say "evaluate"
for n in "${ns[@]}"; do ev "n$n" pick_place default & done
[ "${TW2_L3:-0}" = 1 ] && ev "n${big}_l3" pick_place default &
ev_held_out
wait

say "pack"
for p in "$out"/pol_*; do
  $py scripts/gpu/pack_checkpoint.py "$p" "$out/pack/$(basename "$p")" >> "$out/logs/pack.log" 2>&1
done
$py scripts/gpu/pack_checkpoint.py "$out/idm" "$out/pack/idm" >> "$out/logs/pack.log" 2>&1
$py scripts/gpu/summarize_v2.py "$out" > "$out/summary.json" 2>> "$out/logs/pack.log"
say "done"
