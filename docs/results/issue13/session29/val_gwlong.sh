#!/bin/bash
# Issue #13 on VALIDATION people (tuning split: folds 0-2 reserved and read by nothing, validation fold 3 = S004,
# S005, training S006-S010): the long3_gwlong recipe (G_F 16 epochs at 0.85, G_W 32 at 0.92), its own e_FER,
# Flow-CNN judge and landmark baseline on the split, then `emogan evaluate` and `emogan report` (whose
# figures/faces_by_expression.png shows G_W's faces per expression with FER2013's reading).
#   docs/results/issue13/session29/val_gwlong.sh CLONE OUT     (CLONE: a clone after `make demo`'s data stages)
# PARAMS=FILE runs another params file (default long3_gwlong/params_gwlong.yaml), SEED=N another seed (default 0);
# judges already in OUT (efer3, flowcnn3, landmark3.npz) are kept.
set -e
C=$(realpath "${1:?usage: val_gwlong.sh CLONE OUT}"); W=$(realpath -m "${2:?usage: val_gwlong.sh CLONE OUT}")
P=$(realpath "${PARAMS:-$(dirname "$0")/../../long3_gwlong/params_gwlong.yaml}")
mkdir -p "$W"; cd "$C"
export PATH=$PWD/.venv/bin:$PATH OMP_NUM_THREADS=1 PYTHONPATH=$PWD
t0=$(date +%s); tick() { echo "TIME $1 $(( $(date +%s) - t0 ))s $(date -u +%H:%M:%S)"; }
[ -f "$W/synth_tuning.csv" ] || emogan folds data_manifests/synth.csv --tuning --out "$W/synth_tuning.csv"
F="--fold 3 --folds-file $W/synth_tuning.csv"
[ -f "$W/efer3.json" ] || { emogan train-fer data/stores/synth.zarr $F --out "$W/efer3" --metrics "$W/efer3.json" \
  --params "$P" > "$W/efer3.log" 2>&1; tick efer; }
( [ -f "$W/flowcnn3.json" ] || { emogan train-flowcnn data/stores/synth.zarr $F --out "$W/flowcnn3" \
    --metrics "$W/flowcnn3.json" > "$W/flowcnn3.log" 2>&1; tick flowcnn; }
  [ -f "$W/landmark3.npz" ] || emogan baseline-landmark data/stores/synth.zarr --crops data/crops/synth $F \
    --out "$W/landmark3.npz" > "$W/landmark3.log" 2>&1; tick landmark ) &
emogan train data/stores/synth.zarr $F --config small --efer own --efer-path "$W/efer3" --params "$P" \
  --seed "${SEED:-0}" --out "$W/gan_gwlong" > "$W/train.log" 2>&1; tick train
wait
emogan evaluate "$W/gan_gwlong" data/stores/synth.zarr $F --flowcnn "$W/flowcnn3" --landmark "$W/landmark3.npz" \
  --params "$P" --out "$W/eval/full/fold_3" > "$W/eval.log" 2>&1; tick eval
emogan report "$W/eval" --out "$W/report/REPORT.md" --metrics "$W/report/cv.json" --headline "$W/report/headline.json" \
  --params "$P"; tick report
