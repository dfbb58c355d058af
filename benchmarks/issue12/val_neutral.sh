#!/bin/bash
# Issue #12 diagnosis on VALIDATION subjects (tuning split: folds 0-2 reserved, validation fold 3):
# does G_F draw expression motion onto neutral sequences, and which GAN term makes it?
# Run from the project folder after `make demo` (it reads data/stores/synth.zarr and the landmark baseline).
# Variants: the small config (full), without L_DE (`--ablation no_de`), without L_GW in G_F's loss
# (`--ablation no_gw`: G_W still trains on its own loss), and the D_P term of L_GAN at 0 and
# 0.3 (train.small.gan_weights[0]; a params copy per variant). Scored by benchmarks/issue12/neutral_rows.py.
#   benchmarks/issue12/val_neutral.sh OUT_DIR
# Optional: VARIANTS="full dp0.3 long=FILE" (default: full no_de dp0.0 dp0.3; NAME=FILE trains with the params copy
# FILE, e.g. one whose train.small block differs) and SEEDS="1 2" (training seeds; default: params.yaml's,
# the variant's name unsuffixed; otherwise NAME_sSEED). The folds file, e_FER and Flow-CNN judge are made
# once per OUT_DIR and reused, so a later call with other seeds scores against the same judge.
set -e
W=${1:?usage: val_neutral.sh OUT_DIR}
mkdir -p "$W"
export PATH=$PWD/.venv/bin:$PATH
t0=$(date +%s); tick() { echo "TIME $1 $(( $(date +%s) - t0 ))s"; t0=$(date +%s); }
[ -f "$W/synth_tuning.csv" ] || { emogan folds data_manifests/synth.csv --tuning --out "$W/synth_tuning.csv"; tick folds; }
[ -f "$W/efer3.json" ] || { emogan train-fer data/stores/synth.zarr --fold 3 --folds-file "$W/synth_tuning.csv" --out "$W/efer3" --metrics "$W/efer3.json"; tick efer; }
[ -f "$W/flowcnn3.json" ] || { emogan train-flowcnn data/stores/synth.zarr --fold 3 --folds-file "$W/synth_tuning.csv" --out "$W/flowcnn3" --metrics "$W/flowcnn3.json"; tick flowcnn; }
for w in 0.0 0.3; do   # params copies with train.small.gan_weights[0] (the D_P term) = w
  python - "$w" "$W/params_dp$w.yaml" <<'PY'
import sys
w, out = sys.argv[1], sys.argv[2]
s = open("params.yaml").read()
k = s.index("    gan_weights: [1.0, 1.0]", s.index("  small:\n"))
open(out, "w").write(s[:k] + s[k:].replace("    gan_weights: [1.0, 1.0]", f"    gan_weights: [{w}, 1.0]", 1))
PY
done
run() {   # NAME PARAMS_FILE [extra train options...]
  local v=$1 p=$2; shift 2
  emogan train data/stores/synth.zarr --fold 3 --config small --folds-file "$W/synth_tuning.csv" --efer own \
      --efer-path "$W/efer3" --out "$W/gan_$v" --params "$p" "$@" > "$W/train_$v.log" 2>&1; tick "train_$v"
  emogan evaluate "$W/gan_$v" data/stores/synth.zarr --fold 3 --flowcnn "$W/flowcnn3" \
      --landmark data/baselines/synth_landmark.npz --folds-file "$W/synth_tuning.csv" --out "$W/eval_$v" --params "$p"
  tick "eval_$v"
}
variant() {   # NAME SUFFIX [--seed N]
  local v=$1 x=$2; shift 2
  case $v in
    full) run "full$x" params.yaml "$@" ;;
    no_de) run "no_de$x" params.yaml --ablation no_de "$@" ;;
    no_gw) run "no_gw$x" params.yaml --ablation no_gw "$@" ;;
    dp0.0|dp0.3) run "$v$x" "$W/params_$v.yaml" "$@" ;;
    *=*) run "${v%%=*}$x" "${v#*=}" "$@" ;;   # NAME=PARAMS_FILE: the small config of that params copy
    *) echo "unknown variant $v" >&2; exit 2 ;;
  esac
}
names=()
for v in ${VARIANTS:-full no_de dp0.0 dp0.3}; do
  n=${v%%=*}
  if [ -z "$SEEDS" ]; then variant "$v" ""; names+=("$n")
  else for s in $SEEDS; do variant "$v" "_s$s" --seed "$s"; names+=("${n}_s$s"); done; fi
done
PYTHONPATH=$PWD python benchmarks/issue12/neutral_rows.py "$W" "${names[@]}"
