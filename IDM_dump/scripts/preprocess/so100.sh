#!/usr/bin/env bash
# SO-100 arm, one webcam (dreams at 832x480 of a 640x480 camera).
# Reference step 3.2 for the so100 embodiment, done by dreamgen: preprocess the converted dreams to the
# IDM's input (640x480 aspect restored, letterboxed to 256x256, 30 fps), then label every frame with an IDM and write a LeRobot v3 dataset.
#
#   IDM_dump/scripts/preprocess/so100.sh <converted_dreams_dir> <idm_checkpoint> [output_prefix]
#
# <converted_dreams_dir> is IDM_dump/convert_directory.py's (or `dreamgen convert`'s) output;
# <idm_checkpoint> a dreamgen IDM checkpoint (scripts/idm_training.py / `dreamgen idm-train`).
# Extra idm-extract flags (e.g. --shard 0/8 --device cuda:0) can be given in $EXTRACT_FLAGS.
set -euo pipefail
SRC=${1:?usage: $0 <converted_dreams_dir> <idm_checkpoint> [output_prefix]}
CKPT=${2:?usage: $0 <converted_dreams_dir> <idm_checkpoint> [output_prefix]}
OUT=${3:-IDM_dump/data/so100}
DREAMGEN=${DREAMGEN:-dreamgen}

$DREAMGEN preprocess "$SRC" "${OUT}_split" --embodiment so100 --original-size 640x480
$DREAMGEN idm-extract --checkpoint "$CKPT" --videos "${OUT}_split" --out "${OUT}.data_idm" ${EXTRACT_FLAGS:-}
