#!/bin/bash
# Another seed of val_gwlong.sh's G_W, cheaply: one joint epoch, then G_W alone up to 32 epochs at the recipe's
# decay (in the small config G_W never reads G_F, so its training is the recipe's but for the seed); evaluated with
# val_gwlong.sh's G_F (seed 0) swapped into a copy of the run folder (weights/gf.safetensors).
#   docs/results/issue13/session29/val_seed.sh CLONE OUT SEED      (OUT: val_gwlong.sh's, once its e_FER exists;
#   the evaluation waits for its G_F)
# PARAMS=FILE trains G_W with another params file (a G_W variant), TAG=NAME names its folders (default gw).
set -e
C=$(realpath "${1:?usage: val_seed.sh CLONE OUT SEED}"); W=$(realpath "${2:?}"); S=${3:?}
P=$(realpath "${PARAMS:-$(dirname "$0")/../../long3_gwlong/params_gwlong.yaml}"); T=${TAG:-gw}
cd "$C"; export PATH=$PWD/.venv/bin:$PATH OMP_NUM_THREADS=1 PYTHONPATH=$PWD
F="--fold 3 --folds-file $W/synth_tuning.csv"
emogan train data/stores/synth.zarr $F --config small --efer own --efer-path "$W/efer3" --params "$P" --epochs 1 \
  --gw-epochs 32 --seed "$S" --out "$W/${T}_s$S" > "$W/train_${T}_s$S.log" 2>&1
# val_gwlong.sh may still be training beside this: its G_F is complete once its metrics.json is written
while [ ! -f "$W/gan_gwlong/metrics.json" ]; do sleep 30; done
rm -rf "$W/swap_${T}_s$S"; cp -r "$W/${T}_s$S" "$W/swap_${T}_s$S"; cp "$W/gan_gwlong/weights/gf.safetensors" "$W/swap_${T}_s$S/weights/"
emogan evaluate "$W/swap_${T}_s$S" data/stores/synth.zarr $F --flowcnn "$W/flowcnn3" --landmark "$W/landmark3.npz" \
  --params "$P" --out "$W/eval_${T}_s$S/full/fold_3" > "$W/eval_${T}_s$S.log" 2>&1
