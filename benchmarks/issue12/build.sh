#!/bin/bash
# research store: synth 12 people x 6 poses x 7 expressions, 6 frames, every step (15 pairs per sequence)
set -e
cd "$(dirname "$0")/../.."   # the project folder
export PATH=$PWD/.venv/bin:$PATH PYTHONPATH=$PWD OMP_NUM_THREADS=1
P=benchmarks/issue12/research_params.yaml
t0=$(date +%s); tick() { echo "TIME $1 $(( $(date +%s) - t0 ))s"; t0=$(date +%s); }
emogan synth --params $P --out data/research/synth --overwrite; tick synth
emogan manifest data/research/synth --format emotiongan --dataset synth --out data/research/manifests/synth.csv --params $P; tick manifest
emogan crop data/research/manifests/synth.csv --out data/research/crops/synth --params $P; tick crop
emogan flow data/research/crops/synth --params $P --out data/research/flows/synth.zarr --no-progress; tick flow
emogan stats data/research/flows/synth.zarr --params $P --out data/research/metrics/stats_synth.json; tick stats
emogan normalize data/research/flows/synth.zarr --params $P --stats data/research/metrics/stats_synth.json --out data/research/stores/synth.zarr; tick normalize
emogan folds data/research/manifests/synth.csv --params $P --out data/research/manifests/synth_folds.csv; tick folds
