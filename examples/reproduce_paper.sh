#!/usr/bin/env bash
# Every experiment of "Transfer learning for COVID-19 detection" on the real data, for a GPU machine.
# Usage: bash examples/reproduce_paper.sh NIH_ROOT COVID_ROOT [WORKDIR]
#   NIH_ROOT:   ChestX-ray14 (Data_Entry_2017*.csv, images_*/images/*.png, optional BBox and official lists)
#   COVID_ROOT: a clone of ieee8023/covid-chestxray-dataset (metadata.csv, images/)
# ImageNet weights must be in the torch cache (see docs/reproducing-the-paper.md).
set -euo pipefail
nih="${1:?give the NIH ChestX-ray14 folder}"
covid="${2:?give the covid-chestxray-dataset folder}"
work="${3:-paper}"
mkdir -p "$work" && cd "$work"

# Data: decoded once; patient splits; near-duplicates grouped.
cxrtool prepare nih "$nih" --out data/nih
cxrtool prepare covid "$covid" --out data/covid
cxrtool prepare dedupe data/nih data/covid --drop-from data/covid
cxrtool prepare combine data/nih data/covid --out data/nih-covid15 --per-class 200

# Pretraining on the 14 NIH findings: our ResNet-50 from scratch, ResNet-50 and DenseNet-121 from ImageNet.
cxrtool pretrain --data data/nih --arch cxr-resnet50 --weights none --out runs/nih-cxr-resnet50-scratch
cxrtool pretrain --data data/nih --arch resnet50 --weights imagenet --out runs/nih-resnet50-imagenet
cxrtool pretrain --data data/nih --arch densenet121 --weights imagenet --out runs/nih-densenet121-imagenet
for run in runs/nih-cxr-resnet50-scratch runs/nih-resnet50-imagenet runs/nih-densenet121-imagenet; do
  cxrtool evaluate "$run" --compare chexnet
done

# COVID-19: from the NIH-pretrained network, from ImageNet only, and from scratch.
cxrtool finetune --from runs/nih-densenet121-imagenet --data data/covid --oversample --out runs/covid-from-nih
cxrtool finetune --from none --arch densenet121 --weights imagenet --data data/covid --oversample --out runs/covid-imagenet
cxrtool finetune --from none --arch densenet121 --weights none --data data/covid --oversample --out runs/covid-scratch
for run in runs/covid-from-nih runs/covid-imagenet runs/covid-scratch; do
  cxrtool evaluate "$run"
done
# The same comparison with 5-fold patient cross-validation: one split of ~300 patients is too noisy.
cxrtool finetune --from runs/nih-densenet121-imagenet --data data/covid --oversample --folds 5 --out runs/covid-from-nih-cv
cxrtool evaluate runs/covid-from-nih-cv

# The 15-class problem (14 NIH findings + COVID-19, 200 images per class).
cxrtool finetune --from runs/nih-densenet121-imagenet --data data/nih-covid15 --out runs/nih-covid15
cxrtool evaluate runs/nih-covid15

# Where the networks look: NIH test images scored against the radiologists' boxes, and COVID-19 cases.
cxrtool cam --run runs/nih-densenet121-imagenet --data data/nih --split test --boxes data/nih/boxes.csv
cxrtool cam --run runs/covid-from-nih --data data/covid --split test --top 1

# SOM and t-SNE of the pixels (before training) and of the latent space (after), with cluster scores.
cxrtool embed runs/nih-covid15 --space both --method som,tsne,umap
for run in runs/*/; do cxrtool report "$run"; done
