#!/usr/bin/env bash
# Round 5 on one GPU (issues #21 and #13), two phases that two calls start in the background (progress in
# OUT/progress.log; short polling calls keep the machine, with no idle gap over 30 s between them):
#   round5.sh bench OUT    call 1, after `source scripts/gpu/setup.sh .whlc .whla`: Cosmos-Predict2.5 seconds per
#                          video (2B architecture, random weights, 93 frames, 432x768 at 35 steps and the default
#                          704x1280 at 5; stock vs ours, interleaved in one process) with the GPU to itself; the rows
#                          go to OUT/bench, OUT/bench/done at the end.
#   round5.sh policy OUT   call 2, after `source scripts/gpu/setup.sh .whlb` (+ .gl): collect pick_place/default
#                          demos on the CPU beside the bench; once the bench is done, train the real-only learning
#                          curve with the `toyworld_diffusion` preset, all N at once, each bounded by R5_TRAIN_S;
#                          evaluate 100 episodes per cell at eval-policy's held-out seeds (the largest N also on the
#                          held-out behaviors and environments); pack the policies in fp16; tar it all into
#                          OUT/round5.tgz (a call returns only a few files: fetch the archive).
# N=400 is the N=200 demos (seed 0) mixed with 200 more (seed 1); the evaluation seeds are disjoint from both.
# Knobs (defaults in brackets):
#   R5_NS ["25 50 100 200 400"], R5_SPLIT [200: a larger N mixes pp<split> with seed-1 demos], R5_STEPS [4000],
#   R5_TRAIN_S [510], R5_BATCH [256], R5_DEVICE [cuda], R5_EVAL_N [100];
#   R5_PRESET_EXTRA: YAML lines appended to the preset; R5_VARIANT: a sed script applied to the preset for a second
#   policy on the largest N (pol_n<big>v, evaluated like it); R5_COLLECT_EXTRA: collect flags (e.g.
#   "--action-noise 0.3"); R5_EVAL [1; 0: train and pack only, evaluate elsewhere]; R5_NA2 [1: the largest
#   policies also evaluated executing 2 actions per chunk].
set -u
mode=${1:?usage: round5.sh bench|policy OUT}
out=${2:?usage: round5.sh bench|policy OUT}
out=$(mkdir -p "$out" && cd "$out" && pwd)
mkdir -p "$out"/{data,logs,eval,pack,bench}
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [ "$mode" = bench ]; then
  touch "$out/bench/started"
  say "bench: start ($(nvidia-smi --query-gpu=name,memory.used --format=csv,noheader 2>/dev/null))"
  cosmos() {  # NAME TIMEOUT ARGS...
    timeout "$2" $py benchmarks/bench_generate_cosmos2_5.py --device cuda --repeats 1 "${@:3}" > "$out/bench/$1.md" \
      2> "$out/logs/bench_$1.log" || say "FAILED bench $1 (exit $?)"
    say "bench: $1 done"
  }
  cosmos cosmos2_5_432 420 --sizes 432x768 --variants stock,ours,ours+cudnn
  # the default resolution (84k tokens, ~6x the work per step): 5 steps, so it fits; said so in RESULTS.md
  cosmos cosmos2_5_704_5steps 240 --sizes 704x1280 --variants stock,ours --steps 5
  touch "$out/bench/done"
  exit 0
fi

read -r -a ns <<< "${R5_NS:-25 50 100 200 400}"
big=${ns[-1]}; split=${R5_SPLIT:-200}; dev=${R5_DEVICE:-cuda}; eval_n=${R5_EVAL_N:-100}
steps=${R5_STEPS:-4000}; train_s=${R5_TRAIN_S:-510}; save=500
say "policy: collect"
collect() { $dg toyworld collect --behaviors pick_place --envs default --episodes "$2" --seed "$3" --out "$out/data/$1" \
  ${R5_COLLECT_EXTRA:-} \
  > "$out/logs/collect_$1.log" 2>&1 || say "FAILED collect $1"; }
for n in "${ns[@]}"; do [ "$n" -le "$split" ] && collect "pp$n" "$n" 0 & done
[ "$big" -gt "$split" ] && collect "pp${split}s1" $(( big - split )) 1 &
wait
say "collected; waiting for the bench"
while [ -f "$out/bench/started" ] && [ ! -f "$out/bench/done" ]; do sleep 5; done
data() { if [ "$1" -le "$split" ]; then echo "-d $out/data/pp$1"; else echo "-d $out/data/pp$split -d $out/data/pp${split}s1"; fi; }

say "train ($steps steps, at most $train_s s each)"
cp dreamgen/configs/policy/toyworld_diffusion.yaml "$out/preset.yaml"
[ -n "${R5_PRESET_EXTRA:-}" ] && printf '%s\n' "$R5_PRESET_EXTRA" >> "$out/preset.yaml"
train() {  # NAME N PRESET
  # shellcheck disable=SC2046
  timeout "$train_s" $dg finetune-policy -c "$3" $(data "$2") -o "$out/pol_$1" --device "$dev" --steps "$steps" \
    --batch-size "${R5_BATCH:-256}" --save-every "$save" > "$out/logs/train_$1.log" 2>&1 \
    || say "train $1 stopped (exit $?; evaluated at its last saved step)"
}
for n in "${ns[@]}"; do train "n$n" "$n" "$out/preset.yaml" & done
if [ -n "${R5_VARIANT:-}" ]; then
  sed "$R5_VARIANT" "$out/preset.yaml" > "$out/preset_variant.yaml"
  train "n${big}v" "$big" "$out/preset_variant.yaml" &
fi
wait
say "trained"

if [ "${R5_EVAL:-1}" = 1 ]; then
say "evaluate"
for n in "${ns[@]}"; do ev "n$n" pick_place default & done
[ -n "${R5_VARIANT:-}" ] && ev "n${big}v" pick_place default &
ev_held_out
if [ "${R5_NA2:-1}" = 1 ]; then  # the largest policies again, executing 2 actions per chunk instead of 4 (no retraining:
  for p in "n$big" "n${big}v"; do  # LeRobot's diffusion loss does not use n_action_steps)
    [ -d "$out/pol_$p/checkpoints/last/pretrained_model" ] || continue
    mkdir -p "$out/pol_${p}_na2"; cp -r "$out/pol_$p/checkpoints/last/pretrained_model" "$out/pol_${p}_na2/"
    sed -i 's/"n_action_steps": [0-9]*/"n_action_steps": 2/' "$out/pol_${p}_na2/pretrained_model/config.json"
    ev "${p}_na2" pick_place default &
  done
fi
wait
say "evaluated"
fi

for p in "$out"/pol_*; do
  [[ "$p" == *_na2 ]] && continue
  $py scripts/gpu/pack_checkpoint.py "$p" "$out/pack/$(basename "$p")" >> "$out/logs/pack.log" 2>&1
done
$py scripts/gpu/summarize_v2.py "$out" > "$out/summary.json" 2>> "$out/logs/pack.log"
cp "$out"/preset*.yaml "$out/pack/"
tar -czf "$out/round5.tgz.part" -C "$out" summary.json progress.log bench pack logs \
  $(cd "$out" && ls eval/*/results.json) && mv "$out/round5.tgz.part" "$out/round5.tgz"
say "done ($(du -h "$out/round5.tgz" | cut -f1))"
