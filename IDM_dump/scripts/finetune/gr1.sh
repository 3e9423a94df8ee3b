#!/usr/bin/env bash
# Fourier GR1 humanoid (arms + waist, ego camera, 20 Hz).
# Reference step 4 for the gr1 embodiment, done by dreamgen: fine-tune GR00T N1.7 (LeRobot) on the
# neural trajectories written by IDM_dump/scripts/preprocess/gr1.sh (idm-extract's output).
#
#   IDM_dump/scripts/finetune/gr1.sh [extra gr00t_finetune.py flags] [-- LeRobot flags]
#
# The GR00T base model is a local folder: --base-model-path PATH or $DREAMGEN_GROOT_BASE.
# Mix in the real demonstrations with e.g. --extra-dataset path/to/real:1.0; multi-GPU: --num-gpus 8.
set -euo pipefail
PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} ${TORCHRUN:-torchrun} scripts/gr00t_finetune.py --dataset-path "IDM_dump/data/gr1_unified.data_idm" --data-config gr1_arms_waist --embodiment_tag "gr1" "$@"
