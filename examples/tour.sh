#!/usr/bin/env bash
# The README's tour on the real datasets, command for command (tests/test_tour.py checks that
# every command of the README's tour is here, in order, and CI runs this script on the sample data).
#
# Usage: bash examples/tour.sh [WORKDIR]        (default: ./tour)
#   Reads NIH ChestX-ray14 at ~/data/ChestX-ray14 and the Cohen collection at
#   ~/data/covid-chestxray-dataset, as the README says. CXRTOOL_TOUR_SMALL=1 scales it down (64-px
#   cache, a tiny network at 32 px, two epochs, CPU): a check that the tour works, not a result.
set -euo pipefail
work="${1:-tour}"
mkdir -p "$work" && cd "$work"

# Options appended to the README's commands; an option given twice takes its last value.
size=() train=() tune=()
if [ "${CXRTOOL_TOUR_SMALL:-0}" = 1 ]; then
  size=(--size 64 -q)
  common=(--image-size 32 --epochs 2 --batch-size 32 --workers 0 --device cpu -q)
  train=(--arch tiny-cnn --weights none "${common[@]}")
  tune=("${common[@]}")
fi

# 1. decode each image once into a patient-split cache (256 px by default)
cxrtool prepare nih ~/data/ChestX-ray14 --out data/nih "${size[@]}"
cxrtool prepare covid ~/data/covid-chestxray-dataset --out data/covid "${size[@]}"

# 2. pretrain on the 14 NIH findings (ImageNet start: torchvision's weights, downloaded on first use)
cxrtool pretrain --arch densenet121 --data data/nih --epochs 20 "${train[@]}"

# 3. transfer to COVID-19 (from the newest run), with oversampling of the rare class
cxrtool finetune --data data/covid --oversample "${tune[@]}"

# 4. honest numbers: per-label AUROC with patient-bootstrap intervals, shortcut baselines
cxrtool evaluate --compare chexnet
cxrtool predict ~/data/ChestX-ray14/images/00009745_000.png

# 5. where the network looks, and how often that is inside the radiologists' box
cxrtool cam ~/data/ChestX-ray14/images/00009745_000.png --class Cardiomegaly
cxrtool cam --data data/nih --split test --boxes data/nih/boxes.csv --top 1

# 6. the latent space against the pixels, on a SOM, t-SNE and UMAP, with cluster scores
cxrtool embed --method som
cxrtool report
