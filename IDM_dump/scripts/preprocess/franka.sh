#!/usr/bin/env bash
# Franka (DROID layout): dreams tile 3 views 2x2; the top-left (exterior_image_1) is labelled.
# Reference step 3.2 for the franka embodiment, done by dreamgen: preprocess the converted dreams to the
# IDM's input (top-left view, 672x376 aspect restored, letterboxed to 256x256), then label every frame with an IDM and write a LeRobot v3 dataset.
#
#   IDM_dump/scripts/preprocess/franka.sh <converted_dreams_dir> <idm_checkpoint> [output_prefix]
#
# <converted_dreams_dir> is IDM_dump/convert_directory.py's (or `dreamgen convert`'s) output;
# <idm_checkpoint> a dreamgen IDM checkpoint (scripts/idm_training.py / `dreamgen idm-train`).
# Extra idm-extract flags (e.g. --shard 0/8 --device cuda:0) can be given in $EXTRACT_FLAGS.
set -euo pipefail
SRC=${1:?usage: $0 <converted_dreams_dir> <idm_checkpoint> [output_prefix]}
CKPT=${2:?usage: $0 <converted_dreams_dir> <idm_checkpoint> [output_prefix]}
OUT=${3:-IDM_dump/data/franka}
DREAMGEN=${DREAMGEN:-dreamgen}

$DREAMGEN preprocess "$SRC" "${OUT}_split" --embodiment franka --original-size 672x376
$DREAMGEN idm-extract --checkpoint "$CKPT" --videos "${OUT}_split" --out "${OUT}.data_idm" ${EXTRACT_FLAGS:-}
