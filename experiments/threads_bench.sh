#!/usr/bin/env bash
# Wall time of four commands with the old and the new thread defaults, on an idle and a loaded machine.
#   experiments/threads_bench.sh OUT_DIR
# old: OpenMP's default wait policy (idle threads spin) and torch's default threads (all cores);
# new: dasvit's default (idle threads sleep, OMP_WAIT_POLICY=PASSIVE; threads auto = all cores);
# one: one thread; spinN: idle threads spin N rounds before they sleep (GOMP_SPINCOUNT=N; libgomp spins about
# 100,000 rounds a millisecond; OpenMP's default is 300,000, PASSIVE is 0). Loaded: one other single-thread
# CPU-bound process runs beside (another job).
# Each command is the real one at reduced length, the same in every cell, so the ratios compare.
# LIMIT (s, default 600): a cell that runs longer is stopped and reported with rc=124.
# CONDS (default "idle loaded"), NAMES (default "search retrain bench focus") and SETTINGS (default "new one old")
# pick the cells.
set -u
out=${1:?OUT_DIR}; mkdir -p "$out"; cd "$out" || exit 1
run_search() { dasvit search --headless --preset demo --run-dir R --set 'search.stages=[{depth: 2, keep: 8, epochs: 2}]' --set search.arch_warmup_epochs=1; }
run_retrain() { dasvit retrain vit_b16 --headless --preset demo --run-dir R --set retrain.epochs=2; }
run_bench() { dasvit bench --quick; }
run_focus() { dasvit focus --headless --preset focus-demo --run-dir R --set focus.epochs=3 --set focus.warmup_epochs=1; }
names=(${NAMES:-search retrain bench focus})
load() { python - > /dev/null 2>&1 <<'PY' &
import torch
torch.set_num_threads(1)
a = torch.randn(512, 512)
while True:
    a = torch.tanh(a @ a) * 0.5
PY
echo $!; }
for cond in ${CONDS:-idle loaded}; do
  lp=""; [ "$cond" = loaded ] && { lp=$(load); sleep 3; }
  for i in "${!names[@]}"; do
    for setting in ${SETTINGS:-new one old}; do
      rm -rf R
      case $setting in
        old) env=(OMP_WAIT_POLICY=ACTIVE) ;;
        new) env=() ;;
        one) env=(DASVIT_THREADS=1) ;;
        spin*) env=("GOMP_SPINCOUNT=${setting#spin}") ;;
      esac
      t0=$(date +%s.%N)
      (unset OMP_NUM_THREADS DASVIT_THREADS GOMP_SPINCOUNT; [ ${#env[@]} -gt 0 ] && export "${env[@]}"; export -f "run_${names[$i]}"; timeout "${LIMIT:-600}" bash -c "run_${names[$i]}") > "${names[$i]}-$cond-$setting.log" 2>&1
      rc=$?
      t1=$(date +%s.%N)
      printf "%s %s %s rc=%d %.1f s load %s\n" "${names[$i]}" "$cond" "$setting" $rc "$(echo "$t1 - $t0" | bc)" "$(cut -d' ' -f1 /proc/loadavg)" | tee -a times.txt
    done
  done
  [ -n "$lp" ] && kill "$lp"
done
