#!/bin/bash
# Issue 27's runs for one search seed: wait for the search, reuse the earlier round's retrains of the same
# random cells and ViT block (same recipe and retrain seeds, results/fashion/v2), take every selection
# rule's cell, then one compare that retrains what is missing and scores every cell with the supernet.
set -u
k=$1
export OMP_NUM_THREADS=1
export PYTHONPATH=/work/snap  # a snapshot of the code at the commit that started these runs: the tree may change under them
dasvit() { python -m dasvit_tui.cli "$@"; }
R=/work/runs/fashion/dasvit-s$k
OLD=/work/main/results/fashion/v2/dasvit-s$k
while pgrep -f "run-dir dasvit-s$k " >/dev/null || ! test -f $R/genotype.json; do sleep 30; done
mkdir -p $R/compare
cp -rn $OLD/compare/random* $OLD/compare/vit_b16-d4* $R/compare/
python - "$R" "$OLD" <<'PY'
import sys, shutil
from pathlib import Path
from dasvit.genotype import load_genotype
r, old = Path(sys.argv[1]), Path(sys.argv[2])
if load_genotype(r / "genotype.json").same_cell(load_genotype(old / "genotype.json")):
    for d in old.glob("compare/searched-d4*"):
        shutil.copytree(d, r / "compare" / d.name, dirs_exist_ok=True)
    print("the searched cell is the earlier round's: its retrains reused")
else:
    print("the searched cell differs from the earlier round's")
PY
for rule in argmax skip-limit-1 skip-limit-2 perturbation oneshot; do
  /usr/bin/time -f "derive $rule: %e s" dasvit derive $R --selection $rule
done
/usr/bin/time -f "compare: %e s" dasvit compare $R --random 5 --match-cost --selection skip-limit-1 \
  --selection skip-limit-2 --selection perturbation --selection oneshot --no-progress
