#!/usr/bin/env bash
# DreamGen experiment, part 2 on one GPU: every policy run (variants x seeds + scaling subsets) trains
# and is evaluated in its own process, all at once (the runs are small; one process alone leaves the
# GPU idle), then the report. Each process: `--step policies --step eval --run NAME`, so evaluation
# starts as soon as that run's training ends. Runs in the background (setsid) so short polling calls
# keep the machine. Usage (after scripts/gpu/setup.sh, with part 1's outputs in OUT):
#   bash scripts/gpu/experiment_part2.sh OUT RUN [RUN ...]
out=${1:?usage: experiment_part2.sh OUT RUN [RUN ...]}
shift
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
pids=()
for run in "$@"; do
  python3 -m dreamgen.cli experiment --config toyworld --out "$out" --step policies --step eval --run "$run" \
    > "$out/p3_$run.log" 2>&1 &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
python3 -m dreamgen.cli experiment --config toyworld --out "$out" --step report > "$out/p3_report.log" 2>&1 || status=1
echo "exit $status" >> "$out/p3_report.log"
