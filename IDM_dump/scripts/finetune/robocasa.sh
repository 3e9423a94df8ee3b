#!/usr/bin/env bash
# RoboCasa Panda on an Omron base (3 cameras, 20 Hz).
# Reference step 4 for the robocasa embodiment, done by dreamgen: fine-tune GR00T N1.7 (LeRobot) on the
# neural trajectories written by IDM_dump/scripts/preprocess/robocasa.sh (idm-extract's output).
#
#   IDM_dump/scripts/finetune/robocasa.sh [extra gr00t_finetune.py flags] [-- LeRobot flags]
#
# The GR00T base model is a local folder: --base-model-path PATH or $DREAMGEN_GROOT_BASE.
# Mix in the real demonstrations with e.g. --extra-dataset path/to/real:1.0; multi-GPU: --num-gpus 8.
set -euo pipefail
PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} ${TORCHRUN:-torchrun} scripts/gr00t_finetune.py --dataset-path "IDM_dump/data/robocasa_panda_omron.data_idm" --data-config single_panda_gripper --embodiment_tag "robocasa_panda_omron" "$@"
