#!/bin/bash
# the unmeasured switches and the next ideas, one probe at a time on validation fold 3 (tuning split)
# usage: benchmarks/issue12/probes2.sh NAME [probe_gf.py options...]   (skips a probe whose JSON exists)
set -e
cd "$(dirname "$0")/../.."   # the project folder
export PATH=$PWD/.venv/bin:$PATH PYTHONPATH=$PWD OMP_NUM_THREADS=1
S=data/research/stores/synth.zarr
F=data/research/manifests/synth_tuning_folds.csv
name=$1; shift
[ -f data/research/probes/$name.json ] || python benchmarks/probe_gf.py $S --folds-file $F --fold 3 \
    --flowcnn data/research/models/flowcnn_val3 --out data/research/probes/$name.json "$@" \
    > data/research/probes/$name.log 2>&1
