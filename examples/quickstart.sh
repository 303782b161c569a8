#!/usr/bin/env bash
# The pipeline step by step on generated X-rays: runs anywhere, offline, in a few minutes on a CPU.
# Usage: bash examples/quickstart.sh [WORKDIR]   (default: ./quickstart)
set -euo pipefail
work="${1:-quickstart}"
mkdir -p "$work" && cd "$work"

# Raw data in the NIH layout: images/, Data_Entry_2017.csv, BBox_List_2017.csv.
[ -d raw ] || cxrtool prepare synthetic raw --patients 200 --size 96 --seed 0

# Two caches from the same raw folder: five findings to pretrain on, COVID-19 (held back) to transfer to.
cxrtool prepare nih raw --out data/synth-nih --size 96 --findings Cardiomegaly,Effusion,Mass,Nodule,Pneumothorax
cxrtool prepare nih raw --out data/synth-covid --size 96 --findings COVID-19

# Pretrain a small network from scratch, then transfer it (the new run names its parent).
cxrtool pretrain --data data/synth-nih --arch tiny-cnn --weights none --image-size 96 --epochs 12 \
  --batch-size 32 --lr 0.003 --select auroc --out runs/pretrain
cxrtool finetune --from runs/pretrain --data data/synth-covid --epochs 10 --batch-size 32 --lr 0.001 \
  --oversample --out runs/finetune

# Honest numbers, maps, embeddings and one report per run.
cxrtool evaluate runs/pretrain
cxrtool evaluate runs/finetune
cxrtool cam --run runs/pretrain --data data/synth-nih --split test --top 1 --boxes data/synth-nih/boxes.csv
cxrtool embed runs/pretrain --method som,tsne
cxrtool report runs/pretrain
cxrtool report runs/finetune
echo "open $work/runs/pretrain/report.html and $work/runs/finetune/report.html"
