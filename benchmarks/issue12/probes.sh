#!/bin/bash
# tuning split, Flow-CNN judge of validation fold 3, then supervised G_F probes (one at a time)
set -e
cd "$(dirname "$0")/../.."   # the project folder
export PATH=$PWD/.venv/bin:$PATH PYTHONPATH=$PWD OMP_NUM_THREADS=1
P=benchmarks/issue12/research_params.yaml
S=data/research/stores/synth.zarr
F=data/research/manifests/synth_tuning_folds.csv
t0=$(date +%s); tick() { echo "TIME $1 $(( $(date +%s) - t0 ))s"; t0=$(date +%s); }
[ -f $F ] || emogan folds data/research/manifests/synth.csv --params $P --out $F --tuning
[ -f data/research/models/flowcnn_val3/config.json ] || emogan train-flowcnn $S --fold 3 --folds-file $F --params $P --out data/research/models/flowcnn_val3 --metrics data/research/metrics/flowcnn_val3.json
tick flowcnn
run() { name=$1; shift; [ -f data/research/probes/$name.json ] || python benchmarks/probe_gf.py $S --folds-file $F --fold 3 --flowcnn data/research/models/flowcnn_val3 --out data/research/probes/$name.json "$@" 2>&1 | grep -v "^\[.*step" ; tick $name; }
run direct --steps 1500
run residual --steps 1500 --gf '{"output": "residual"}'
run direct_step --steps 1500 --weighting step
run residual_step --steps 1500 --gf '{"output": "residual"}' --weighting step
