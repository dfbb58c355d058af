#!/bin/bash
# Folds 1 and 2 of the demo's config, the stages of dvc.yaml run by hand (the two trainings side by side, one thread each)
set -e
cd "${1:?usage: run3.sh DEMO_CLONE (a clone of 01c4863 after make demo, params evaluate.folds [0, 1, 2])}"
export PATH=$PWD/.venv/bin:$PATH
t0=$(date +%s); tick() { echo "TIME $1 $(( $(date +%s) - t0 ))s"; }
for k in 1 2; do
  OMP_NUM_THREADS=1 emogan train data/stores/synth.zarr data/stores/synth_ckplus.zarr --fold $k --config small \
    --folds-file data_manifests/synth_folds.csv --folds-file data_manifests/synth_ckplus_folds.csv --efer own \
    --efer-path models/efer_fold$k --out models/emogan_small_fold$k --live-dir metrics/train_fold$k > train_fold$k.log 2>&1 &
done
wait; tick train
for k in 1 2; do
  emogan train-flowcnn data/stores/synth.zarr data/stores/synth_ckplus.zarr --fold $k --folds-file data_manifests/synth_folds.csv \
    --folds-file data_manifests/synth_ckplus_folds.csv --out models/flowcnn_fold$k --metrics metrics/flowcnn_fold$k.json
done; tick flowcnn
for d in synth synth_ckplus; do
  emogan baseline-landmark data/stores/$d.zarr --crops data/crops/$d --folds-file data_manifests/${d}_folds.csv --out data/baselines/${d}_landmark.npz
done; tick landmark
for k in 0 1 2; do
  emogan evaluate models/emogan_small_fold$k data/stores/synth.zarr data/stores/synth_ckplus.zarr --fold $k --flowcnn models/flowcnn_fold$k \
    --landmark data/baselines/synth_landmark.npz --landmark data/baselines/synth_ckplus_landmark.npz \
    --folds-file data_manifests/synth_folds.csv --folds-file data_manifests/synth_ckplus_folds.csv --out ${OUT:-results}/eval/full/fold_$k
done; tick evaluate
emogan report ${OUT:-results}/eval --out ${OUT:-results}/REPORT.md --metrics ${OUT:-results}/cv.json --headline ${OUT:-results}/headline.json
tick report
echo ALLDONE
