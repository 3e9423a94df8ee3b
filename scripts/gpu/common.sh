# Shared by the ToyWorld GPU rounds (round3.sh, toyworld_v2.sh); source it after setting `out`.
# The thread/buffering environment, the commands ($dg, $py: tiny runs switch them to .venv), the progress
# log (say) and one eval-policy cell (ev POLICY BEHAVIOR ENV; reads $eval_n and $dev).
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1
dg="python3 -m dreamgen.cli"; py=python3
say() { echo "$(date +%T) $*" >> "$out/progress.log"; }
ev() { $dg eval-policy "$out/pol_$1" -b "$2" --env "$3" -n "$eval_n" --device "$dev" -o "$out/eval/$1_$2_$3" \
  > "$out/logs/eval_$1_$2_$3.log" 2>&1 || say "FAILED eval $1 $2 $3"; }
# the held-out cells of the largest policy: other behaviors in the default environment, pick_place elsewhere
ev_held_out() {
  for b in put_in_bin push lift; do ev "n$big" "$b" default & done
  for e in dark_table checker evening; do ev "n$big" pick_place "$e" & done
}
