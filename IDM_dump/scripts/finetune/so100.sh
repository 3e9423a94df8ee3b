#!/usr/bin/env bash
# SO-100 arm, one webcam, 30 Hz.
# Reference step 4 for the so100 embodiment, done by dreamgen: fine-tune GR00T N1.7 (LeRobot) on the
# neural trajectories written by IDM_dump/scripts/preprocess/so100.sh (idm-extract's output).
#
#   IDM_dump/scripts/finetune/so100.sh [extra gr00t_finetune.py flags] [-- LeRobot flags]
#
# The GR00T base model is a local folder: --base-model-path PATH or $DREAMGEN_GROOT_BASE.
# Mix in the real demonstrations with e.g. --extra-dataset path/to/real:1.0; multi-GPU: --num-gpus 8.
set -euo pipefail
PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} ${TORCHRUN:-torchrun} scripts/gr00t_finetune.py --dataset-path "IDM_dump/data/so100.data_idm" --data-config so100 --embodiment_tag "so100" "$@"
