#!/usr/bin/env bash
# World model v2 for ToyWorld v2 (issue #15) on one GPU, every step a `dreamgen` command:
#   1. collect (parallel): the prior (action-free stand-in for internet video: arm styles blue_box and
#      floating, all 6 behaviors x all 5 environments, 2 x 5 x 120 episodes, seeds 100/101), the target's
#      real videos (default arm, pick_place/default, 3 x 100 episodes, seeds 0-2) and held-out sets
#      (32 episodes each, seed 900, disjoint from training): pick_place in default + 3 new environments,
#      put_in_bin and push in default;
#   2. train `finetune-wm --preset toy_v2 --init scratch` on prior + target: the autoencoder on whole
#      37-frame clips with foreground-weighted loss, then latents precomputed once and the transformer
#      (bf16, no gradient checkpointing); resumable (rerun = --resume), each phase capped in wall time;
#   3. evaluate (parallel, GPU): autoencoder round trip per frame index + foreground, dreams vs real vs
#      copy-first-frame, pixel-judge pass rates; a contact sheet; the fp16 pack re-checked on the CPU;
#   4. pack: the fp16 model under OUT/pack/toyworld_wm, OUT/results.json (scripts/gpu/summarize_wm2.py).
# Only results land in OUT (JSON, logs, PNGs, pack/); data, checkpoints and dream videos stay in WM2_WORK
# (default /tmp/wm2_work; a rerun with the same WORK reuses the data and resumes training).
# Usage (after scripts/gpu/setup.sh): setsid bash scripts/gpu/wm_v2.sh OUT >/dev/null 2>&1 &
# Knobs: WM2_VAE_STEPS, WM2_STEPS (upper bounds), WM2_VAE_MIN, WM2_MIN (wall-time caps, minutes),
# WM2_LAYERS, WM2_HEADS (transformer depth, width / 64; default 8, 4), WM2_VAE_BATCH (8), WM2_BATCH, WM2_EVAL_N, WM2_PRIOR_N
# (episodes per arm x environment), WM2_TARGET_N (x 3), WM2_PY (python), WM2_WORK.
# WM2_VAE_ONLY=1: the autoencoder alone (issue #15's round-trip bar and its throughput): the same data and
# autoencoder phase, then one transformer step at batch 2 without latent precomputation (finetune-wm writes
# a loadable model only after its transformer phase), the round trip on every held-out set (no dreams), and
# the fp16 autoencoder under OUT/pack/vae.
# WM2_TINY=1 runs the same steps at smoke size on a CPU.
set -u
out=${1:?usage: wm_v2.sh OUT}
work=${WM2_WORK:-/tmp/wm2_work}
mkdir -p "$out"/{logs,eval,pack} "$work"/{data,eval}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
py=${WM2_PY:-python3}; dg="$py -m dreamgen.cli"
say() { echo "$(date +%T) $*" | tee -a "$out/progress.log"; }
envs=(default dark_table checker distractors evening)
preset=toy_v2
if [ "${WM2_TINY:-0}" = 1 ]; then
  prior_n=6; target_n=2; held_n=2; eval_n=2; dev=cpu; envs=(default checker)
  vae_steps=${WM2_VAE_STEPS:-2}; steps=${WM2_STEPS:-2}; vae_min=${WM2_VAE_MIN:-5}; min=${WM2_MIN:-5}; batch=${WM2_BATCH:-2}
  extra=(--num-steps 2)
  # the same 96x96, 37-frame clips through a narrow model (1 block, 8-wide autoencoder, 2 statistics clips)
  preset="$work/toy_v2_tiny.yaml"
  sed -e 's/^  base_dim: 32/  base_dim: 8/' -e 's/^  num_layers: 8 /  num_layers: 1 /' -e 's/^  vae_stats_clips: 64/  vae_stats_clips: 2/' \
    -e 's/^  vae_batch_size: 8 /  vae_batch_size: 1 /' dreamgen/configs/worldmodel/toy_v2.yaml > "$preset"
else
  prior_n=${WM2_PRIOR_N:-120}; target_n=${WM2_TARGET_N:-100}; held_n=32; eval_n=${WM2_EVAL_N:-32}; dev=cuda
  vae_steps=${WM2_VAE_STEPS:-3000}; steps=${WM2_STEPS:-12000}; vae_min=${WM2_VAE_MIN:-3.5}; min=${WM2_MIN:-5}
  batch=${WM2_BATCH:-32}; extra=()
fi
if [ -n "${WM2_LAYERS:-}${WM2_HEADS:-}${WM2_VAE_BATCH:-}" ]; then  # transformer size (pack: 2 bytes a parameter);
  preset="$work/toy_v2_custom.yaml"  # WM2_VAE_BATCH: clips per autoencoder step (the first run: 1.3 steps/s at 8)
  sed -e "s/^  num_layers: 8 /  num_layers: ${WM2_LAYERS:-8} /" -e "s/^  num_attention_heads: 4$/  num_attention_heads: ${WM2_HEADS:-4}/" \
    -e "s/^  vae_batch_size: 8 /  vae_batch_size: ${WM2_VAE_BATCH:-8} /" dreamgen/configs/worldmodel/toy_v2.yaml > "$preset"
fi
vae_only=${WM2_VAE_ONLY:-0}
if [ "$vae_only" = 1 ]; then  # the transformer phase: negligible (1 step, batch 2, no latent bank)
  src=$preset; [ -f "$src" ] || src=dreamgen/configs/worldmodel/$preset.yaml
  preset="$work/toy_v2_vae_only.yaml"
  sed 's/^  precompute_latents: true/  precompute_latents: false/' "$src" > "$preset.tmp" && mv "$preset.tmp" "$preset"
  steps=1; batch=2
fi
t_start=$(date +%s)

say "collect"
collect() {  # NAME ARM BEHAVIORS ENVS EPISODES SEED
  [ -f "$work/data/$1/meta/info.json" ] && return 0
  rm -rf "$work/data/$1"
  $dg toyworld collect --arm-style "$2" --behaviors "$3" --envs "$4" --episodes "$5" --seed "$6" \
    --out "$work/data/$1" > "$out/logs/collect_$1.log" 2>&1 || say "FAILED collect $1"
}
for e in "${envs[@]}"; do
  collect "prior_blue_box_$e" blue_box all "$e" "$prior_n" 100 &
  collect "prior_floating_$e" floating all "$e" "$prior_n" 101 &
done
for s in 0 1 2; do collect "target_$s" default pick_place default "$target_n" "$s" & done
for e in default dark_table checker evening; do collect "held_pick_place_$e" default pick_place "$e" "$held_n" 900 & done
for b in put_in_bin push; do collect "held_${b}_default" default "$b" default "$held_n" 900 & done
wait
say "collected ($(( $(date +%s) - t_start )) s)"

say "train"
sources=()
for d in "$work"/data/prior_* "$work"/data/target_1 "$work"/data/target_2; do sources+=(--extra-data "$d"); done
resume=(); [ -d "$work/wm" ] && resume=(--resume)
if [ ! -f "$work/wm/dreamgen_wm.json" ]; then
  $dg finetune-wm "$work/data/target_0" "$work/wm" "${sources[@]}" --preset "$preset" --embodiment toyworld \
    --resolution 96x96 --init scratch --mode full --vae-steps "$vae_steps" --steps "$steps" --batch-size "$batch" \
    --vae-minutes "$vae_min" --minutes "$min" --save-every 1000 --device "$dev" "${resume[@]}" \
    > "$out/logs/train.log" 2>&1 || say "FAILED train"
fi
cp "$work/wm/loss.csv" "$work/wm/loss.png" "$out/" 2>/dev/null
say "trained ($(( $(date +%s) - t_start )) s)"

if [ "$vae_only" = 1 ]; then
  say "autoencoder round trip"
  for d in "$work"/data/held_*; do
    name=$(basename "$d"); name=${name#held_}
    $py -m dreamgen.worldmodel.evaluate "$work/wm" "$d" "$work/eval/$name" --vae-only --num "$eval_n" --device "$dev" \
      > "$out/logs/vae_$name.log" 2>&1 || say "FAILED vae round trip $name"
    mkdir -p "$out/eval/$name"
    cp "$work/eval/$name"/vae_roundtrip.{json,png} "$out/eval/$name/" 2>/dev/null
  done
  say "pack (autoencoder)"
  $py scripts/gpu/pack_wm.py "$work/wm" "$work/pack" >> "$out/logs/pack.log" 2>&1 || say "FAILED pack"
  rm -rf "$out/pack/vae"; cp -r "$work/pack/model/vae" "$out/pack/vae" 2>> "$out/logs/pack.log" || say "FAILED pack vae"
  $py -m dreamgen.worldmodel.evaluate "$work/pack" "$work/data/held_pick_place_default" "$work/eval/pack_cpu" \
    --vae-only --num 2 --device cpu > "$out/logs/pack_check.log" 2>&1 || say "FAILED pack check"
  $py scripts/gpu/summarize_wm2.py "$out" > "$out/results.json" 2>> "$out/logs/pack.log"
  du -sh "$out/pack/vae" >> "$out/logs/pack.log" 2>&1
  say "done ($(( $(date +%s) - t_start )) s)"
  exit 0
fi

say "evaluate"
ev() {  # a held-out set: autoencoder round trip, then dreams + pixel judge
  local name; name=$(basename "$1"); name=${name#held_}
  $py -m dreamgen.worldmodel.evaluate "$work/wm" "$1" "$work/eval/$name" --vae-only --num "$eval_n" --device "$dev" \
    > "$out/logs/vae_$name.log" 2>&1 || say "FAILED vae round trip $name"
  $py -m dreamgen.worldmodel.evaluate "$work/wm" "$1" "$work/eval/$name" --num "$eval_n" --judge --device "$dev" \
    "${extra[@]}" > "$out/logs/eval_$name.log" 2>&1 || say "FAILED eval $name"
  mkdir -p "$out/eval/$name"
  cp "$work/eval/$name"/{metrics.json,vae_roundtrip.json,vae_roundtrip.png} "$out/eval/$name/" 2>/dev/null
}
for d in "$work"/data/held_*; do ev "$d" & done
wait
$py scripts/gpu/wm2_sheet.py "$work/eval/pick_place_default" "$out/contact_sheet.png" >> "$out/logs/pack.log" 2>&1
say "evaluated ($(( $(date +%s) - t_start )) s)"

say "pack"
$py scripts/gpu/pack_wm.py "$work/wm" "$out/pack/toyworld_wm" >> "$out/logs/pack.log" 2>&1 || say "FAILED pack"
$py -m dreamgen.worldmodel.evaluate "$out/pack/toyworld_wm" "$work/data/held_pick_place_default" "$work/eval/pack_cpu" \
  --vae-only --num 2 --device cpu > "$out/logs/pack_check.log" 2>&1 || say "FAILED pack check"
$py scripts/gpu/summarize_wm2.py "$out" > "$out/results.json" 2>> "$out/logs/pack.log"
du -sh "$out/pack/toyworld_wm" >> "$out/logs/pack.log" 2>&1
say "done ($(( $(date +%s) - t_start )) s)"
