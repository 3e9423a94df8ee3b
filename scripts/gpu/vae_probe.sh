#!/usr/bin/env bash
# Does the toy world model's autoencoder keep ToyWorld's objects when trained longer? Collects the
# experiment's real demos and floating-gripper prior, trains only the autoencoder (VAE_STEPS) from
# scratch on the prior, and round-trips 16 real pick-and-place clips through it.
# Usage (after scripts/gpu/setup.sh): bash scripts/gpu/vae_probe.sh OUT [VAE_STEPS]
out=${1:?usage: vae_probe.sh OUT [VAE_STEPS]}
steps=${2:-2500}
mkdir -p "$out"
{
  python3 -m dreamgen.cli experiment --config toyworld --out "$out" --step real --step prior &&
  python3 -m dreamgen.cli finetune-wm --preset toy --embodiment toyworld --mode full --init scratch \
    "$out/prior" "$out/vae$steps" --steps 1 --vae-steps "$steps" --batch-size 32 --save-every 0 &&
  python3 -m dreamgen.worldmodel.evaluate "$out/vae$steps" "$out/real" "$out/rt$steps" --vae-only --num 16
  echo "exit $?"
} > "$out/vae_probe.log" 2>&1
