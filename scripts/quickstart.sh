#!/usr/bin/env bash
# The main job on a fresh machine: set up, train a small MNIST logic network on the CPU (a few
# minutes), report its discrete test accuracy, simplify and compile its circuit (checked bit-exact
# against the model on the whole test set, with images/s), and export it as C and Verilog.
#   bash scripts/quickstart.sh [OUT_DIR]        (default runs/quickstart; an existing run is resumed)
# Data: --data-dir is ../shared/data when present, else $DIFFGATES_DATA, else the files are
# downloaded into the user cache.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/quickstart}
PY=${PYTHON:-python3}
bash scripts/setup.sh
# The plot extra (matplotlib): the run writes its learning curves to $OUT/learning_curves.png.
"$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -e ".[plot]"

data_args=()
if [ -d ../shared/data/mnist ]; then data_args=(--data-dir ../shared/data); fi

resume=()
if [ -f "$OUT/checkpoint.json" ]; then resume=(--resume); fi
# 6 layers of 4000 gates, tau 10, 4000 steps of batch 100, with the variant that trains fastest here:
# Walsh parametrization with the residual (pass-through) init at logit 1 (README: training variants).
"$PY" -m diffgates train --dataset mnist -k 4000 -l 6 -t 10 -bs 100 -ni 4000 -ef 1000 --seed 0 \
    --parametrization walsh --init residual --residual-logit 1 \
    --out "$OUT" --no-progress "${data_args[@]}" "${resume[@]}"
"$PY" -c "import json,sys; r=json.load(open(sys.argv[1])); print(f'discrete test accuracy: {100*r[\"test_acc_eval_mode\"]:.2f}%')" "$OUT/results.json"

"$PY" -m diffgates compile "$OUT" "${data_args[@]}"
"$PY" -m diffgates circuit "$OUT" --out "$OUT/circuit.json"
"$PY" -m diffgates export c "$OUT/circuit.json" "$OUT/c"
"$PY" -m diffgates export verilog "$OUT/circuit.json" "$OUT/logic_net.v"
[ -f "$OUT/learning_curves.png" ] && echo "learning curves: $OUT/learning_curves.png"
echo "quickstart: done; everything is in $OUT"
