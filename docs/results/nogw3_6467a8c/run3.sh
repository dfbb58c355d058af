#!/bin/bash
# Folds 0, 1, 2 of the demo's config at 6467a8c (G_F without L_GW, the dark mouth): the data stages first, then fold 0 is `dvc repro`
# (the committed demo), folds 1 and 2 the same stages' commands by hand; the three trainings side by side,
# one torch thread each.
set -e
cd "${1:?usage: run3.sh DEMO_CLONE}"
export PATH=$PWD/.venv/bin:$PATH
export OMP_NUM_THREADS=1
t0=$(date +%s); tick() { echo "TIME $1 $(( $(date +%s) - t0 ))s $(date -u +%H:%M:%S)"; }
dvc repro normalize baseline-landmark > data_repro.log 2>&1; tick data
F="--folds-file data_manifests/synth_folds.csv --folds-file data_manifests/synth_ckplus_folds.csv"
S="data/stores/synth.zarr data/stores/synth_ckplus.zarr"
(dvc repro > demo_repro.log 2>&1; echo "REPRO EXIT $?" >> demo_repro.log) &
for k in 1 2; do
  ( emogan train-fer $S --fold $k $F --out models/efer_fold$k --metrics metrics/train_fer_fold$k.json > train_fer_fold$k.log 2>&1
    emogan train $S --fold $k --config small $F --efer own --efer-path models/efer_fold$k \
      --out models/emogan_small_fold$k --live-dir metrics/train_fold$k > train_fold$k.log 2>&1 ) &
done
wait; tick trainings
for k in 1 2; do
  emogan train-flowcnn $S --fold $k $F --out models/flowcnn_fold$k --metrics metrics/flowcnn_fold$k.json
done; tick flowcnn
for k in 0 1 2; do
  emogan evaluate models/emogan_small_fold$k $S --fold $k --flowcnn models/flowcnn_fold$k \
    --landmark data/baselines/synth_landmark.npz --landmark data/baselines/synth_ckplus_landmark.npz \
    $F --out ${OUT:-results}/eval/full/fold_$k
done; tick evaluate
emogan report ${OUT:-results}/eval --out ${OUT:-results}/REPORT.md --metrics ${OUT:-results}/cv.json --headline ${OUT:-results}/headline.json
tick report
echo ALLDONE
