#!/bin/bash
# Folds 0, 1, 2 (the reserved test folds) of the small config trained twice as long with a slower decay
# (params_long.yaml beside this script: train.small.epochs 16, lr_gamma 0.85; chosen on validation fold 3 of
# the tuning split, docs/EVALUATION.md "Session 10"), issues #12 and #13. The data stages first, then one lane
# per fold (train-fer, train, the fold's landmark baseline, evaluate, as dvc.yaml gives those commands; the
# baseline per fold since session 18, fold 0's only before) and one lane for the three Flow-CNN judges, all side by
# side with one torch thread each; the report last.
#   OUT=results docs/results/long3/run3.sh DEMO_CLONE      (a clone of the project after `make weights`)
# FOLDS="5 6 7" runs other folds (default "0 1 2"); the report covers every fold under $OUT/eval/full.
# PARAMS=FILE trains and evaluates with another params file, TAG=NAME names the generators models/emogan_NAME_foldK
# (default small) and their logs; Flow-CNN judges and e_FERs already in the clone (models/flowcnn_foldK.done,
# models/efer_foldK/) are kept, as neither reads train.small (docs/results/long3_noefer/ was made this way).
# EFER=NAME trains (or keeps) the own e_FERs as models/efer_NAME_foldK with PARAMS's train_fer (default: efer_foldK),
# e.g. an e_FER that reads the change from the neutral face (docs/results/long3_cefer/).
# REUSE=1 evaluates generators already in the clone (models/emogan_TAG_foldK) instead of training them again: for
# evaluation-only switches (docs/results/long3_border/ re-scored long3_gated's generators this way).
# TRAIN_EXTRA="STORE FOLDS_CSV" adds a store to G_F/G_W's training only (its people in no test fold; judges, e_FERs
# and the evaluation keep synth and synth_ckplus): docs/results/long3_more/ trained on 12 more synthetic people so.
set -e
P=$(realpath "${PARAMS:-$(dirname "$0")/params_long.yaml}")
TAG=${TAG:-small}
cd "${1:?usage: run3.sh DEMO_CLONE}"
export PATH=$PWD/.venv/bin:$PATH
export OMP_NUM_THREADS=1
OUT=${OUT:-results}
E=models/efer${EFER:+_$EFER}_fold
FOLDS=${FOLDS:-0 1 2}
t0=$(date +%s); tick() { echo "TIME $1 $(( $(date +%s) - t0 ))s $(date -u +%H:%M:%S)"; }
dvc repro normalize > data_repro.log 2>&1; tick data   # the landmark baselines: per fold, below
F="--folds-file data_manifests/synth_folds.csv --folds-file data_manifests/synth_ckplus_folds.csv"
S="data/stores/synth.zarr data/stores/synth_ckplus.zarr"
( for k in $FOLDS; do
    [ -f models/flowcnn_fold$k.done ] && continue
    emogan train-flowcnn $S --fold $k $F --out models/flowcnn_fold$k --metrics metrics/flowcnn_fold$k.json \
      > flowcnn_fold$k.log 2>&1; touch models/flowcnn_fold$k.done; tick flowcnn$k
  done ) &
for k in $FOLDS; do
  ( [ -d $E$k ] || {
      emogan train-fer $S --fold $k $F --out $E$k --metrics metrics/train_fer${EFER:+_$EFER}_fold$k.json \
        --params "$P" > train_fer${EFER:+_$EFER}_fold$k.log 2>&1; tick efer$k; }
    if [ "$REUSE" = 1 ] && [ -d models/emogan_${TAG}_fold$k ]; then echo "fold $k: reusing models/emogan_${TAG}_fold$k"
    else
      emogan train $S ${TRAIN_EXTRA%% *} --fold $k --config small $F ${TRAIN_EXTRA:+--folds-file ${TRAIN_EXTRA#* }} --efer own --efer-path $E$k --params "$P" \
        --out models/emogan_${TAG}_fold$k --live-dir metrics/train_${TAG}_fold$k > train_${TAG}_fold$k.log 2>&1
      tick train$k
    fi
    L=""   # the landmark baseline of this fold (dvc.yaml's stage computes evaluate.folds only)
    for d in synth synth_ckplus; do
      b=data/baselines/${d}_landmark_fold$k.npz; L="$L --landmark $b"
      [ -f $b ] || emogan baseline-landmark data/stores/$d.zarr --crops data/crops/$d --fold $k \
        --folds-file data_manifests/${d}_folds.csv --out $b > baseline_${d}_fold$k.log 2>&1
    done
    while [ ! -f models/flowcnn_fold$k.done ]; do sleep 20; done
    emogan evaluate models/emogan_${TAG}_fold$k $S --fold $k --flowcnn models/flowcnn_fold$k --params "$P" \
      $L $F --out $OUT/eval/full/fold_$k > evaluate_${TAG}_fold$k.log 2>&1
    tick evaluate$k ) &
done
wait
emogan report $OUT/eval --out $OUT/REPORT.md --metrics $OUT/cv.json --headline $OUT/headline.json --params "$P"
tick report
echo ALLDONE
