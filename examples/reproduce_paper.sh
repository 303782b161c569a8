#!/usr/bin/env bash
# The experiments of "Transfer learning for COVID-19 detection", end to end, into one results table.
#
# Usage:
#   bash examples/reproduce_paper.sh NIH_ROOT COVID_ROOT [WORKDIR] [--external DATA]   # the full run (GPU)
#   bash examples/reproduce_paper.sh --small [NIH_ROOT COVID_ROOT] [WORKDIR]           # 2-core CPU (timed in docs/reproducing-the-paper.md)
#   bash examples/reproduce_paper.sh --generated [WORKDIR]                             # generated X-rays, minutes
#
#   NIH_ROOT:   ChestX-ray14 (Data_Entry_2017*.csv, images, optional BBox and official lists)
#   COVID_ROOT: a clone of ieee8023/covid-chestxray-dataset (metadata.csv, images/)
#   --external: a prepared cache of another COVID-19 collection (cxrtool prepare folder ...): every
#               COVID-19 arm is also scored on it, less its copies of the arm's NIH/Cohen images
#   --small:    the same arms with a small network (ResNet-18) on 64-pixel images, few epochs; the
#               data defaults to ../shared/data beside the repository (the sample in the repo's CI)
#   --generated: the same arms on generated X-rays (`cxrtool prepare synthetic`: five findings to
#               pretrain on, the held-back COVID-19 pattern to transfer to, as `cxrtool demo` does)
#               with a tiny CNN: checks the whole pipeline and the table in minutes on a busy CPU; it
#               says nothing about the methods (no ImageNet arm, no 15-class arm: no COVID-19 collection)
#
# Arms: from scratch, ImageNet only, NIH-pretrained (each on one patient split, trained once per seed
# for 3 seeds, and with k-fold patient cross-validation), and the 15-class NIH + COVID-19 model.
# Output: WORKDIR/results/table.md (the arms, then each arm against "From scratch" on the same
# patients: paired AUROC difference with its interval and p-value, k-fold difference, seeds' spread;
# and arms.csv, differences.csv, findings.csv). A finished step is not run again, so an interrupted
# script can be rerun.
set -euo pipefail

small=0
generated=0
external=""
positional=()
while [ $# -gt 0 ]; do
  case "$1" in
    --small) small=1 ;;
    --generated) generated=1 ;;
    --external) external="${2:?--external needs a prepared cache}"; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    -*) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) positional+=("$1") ;;
  esac
  shift
done

here="$(cd "$(dirname "$0")/.." && pwd)"
if [ "$generated" = 1 ]; then
  work="${positional[0]:-paper-generated}"
  # Cached at 64 px, trained at 32 px without loader workers: minutes even on a CPU shared by many.
  arch=tiny-cnn; size=64; folds=3; seeds=3
  pre_epochs=(--epochs 5 --lr 3e-3); ft_epochs=(--epochs 6 --lr 1e-3 --early-stop 0 --batch-size 32)
  common=(--image-size 32 --workers 0 --quiet)
  bootstrap=(--bootstrap 200)
elif [ "$small" = 1 ]; then
  nih="${positional[0]:-$here/../shared/data/nih-chestxray14-sample}"
  covid="${positional[1]:-$here/../shared/data/covid-chestxray-dataset}"
  work="${positional[2]:-paper-small}"
  arch=resnet18; size=64; per_class=200; folds=3; seeds=3
  pre_epochs=(--epochs 6); ft_epochs=(--epochs 8 --early-stop 4 --batch-size 32)
  common=(--image-size "$size" --workers 1 --quiet)
  bootstrap=(--bootstrap 200)
else
  nih="${positional[0]:?give the NIH ChestX-ray14 folder (or --small)}"
  covid="${positional[1]:?give the covid-chestxray-dataset folder}"
  work="${positional[2]:-paper}"
  arch=densenet121; size=256; per_class=200; folds=5; seeds=3
  pre_epochs=(); ft_epochs=()
  common=()
  bootstrap=()
fi
if [ "$generated" = 0 ]; then
  [ -d "$nih" ] || { echo "error: $nih: no such folder (NIH ChestX-ray14)" >&2; exit 2; }
  [ -d "$covid" ] || { echo "error: $covid: no such folder (covid-chestxray-dataset)" >&2; exit 2; }
  nih="$(cd "$nih" && pwd)"; covid="$(cd "$covid" && pwd)"
fi
case "$external" in ""|/*) ;; *) external="$PWD/$external" ;; esac
mkdir -p "$work" && cd "$work"
# No dedupe step for the external set: `evaluate --external` itself drops (and lists, in the arm's
# eval/external_duplicates.csv) every external image that copies an image of a cache in the arm's
# lineage: data/covid and, for the NIH-pretrained arm, data/nih too.
ext_opt=(); [ -n "$external" ] && ext_opt=(--external "$external")

step() { echo; echo "== $*"; }
# done_or FILE CMD...: run CMD unless FILE (its last output) exists from an earlier, finished run.
done_or() { local file="$1"; shift; if [ -e "$file" ]; then echo "   (done: $file)"; else "$@"; fi; }

# ImageNet weights: a connected machine downloads them on first use; in --small mode the arm runs only
# when the file is already in the torch cache, and is listed as skipped otherwise.
imagenet=1
if [ "$generated" = 1 ]; then
  imagenet=0; weights_file=""
else
weights_file="$(python -c "import os, torch; from torchvision.models import get_model_weights as w; print(os.path.join(torch.hub.get_dir(), 'checkpoints', os.path.basename(w('$arch').IMAGENET1K_V1.url)))")"
if [ "$small" = 1 ] && [ ! -f "$weights_file" ]; then
  imagenet=0
  echo "note: $weights_file is not in the torch cache: the ImageNet arms are skipped (no download in --small mode)"
fi
fi
start=imagenet; [ "$imagenet" = 1 ] || start=none

step "1. Data: decoded once, patient splits, near-duplicates grouped"
if [ "$generated" = 1 ]; then
  # One generated collection, prepared twice with the same patient split (as `cxrtool demo` does):
  # the pretraining never sees a patient of the COVID-19 cache's validation or test split.
  split=(--size "$size" --val-frac 0.2 --test-frac 0.25 --seed 0 --quiet)
  done_or raw/Data_Entry_2017.csv cxrtool prepare synthetic raw --patients 400 --size "$size" --seed 0 --quiet
  done_or data/nih/manifest.json cxrtool prepare nih raw --out data/nih \
    --findings "$(python -c 'from cxrtool.data.sources.synthetic import PRETRAIN_FINDINGS as f; print(",".join(f))')" "${split[@]}"
  done_or data/covid/manifest.json cxrtool prepare nih raw --out data/covid --findings COVID-19 "${split[@]}"
else
done_or data/nih/manifest.json cxrtool prepare nih "$nih" --out data/nih --size "$size" --quiet
done_or data/covid/manifest.json cxrtool prepare covid "$covid" --out data/covid --size "$size" --quiet
# NIH films re-hosted in the Cohen set would sit in both pretraining and COVID-19 test data.
done_or data/covid/.deduped cxrtool prepare dedupe data/nih data/covid --drop-from data/covid --quiet
touch data/covid/.deduped
done_or data/nih-covid15/manifest.json cxrtool prepare combine data/nih data/covid --out data/nih-covid15 --per-class "$per_class" --quiet
fi

findings_text="14 NIH findings"; [ "$generated" = 1 ] && findings_text="5 generated findings"
step "2. Pretraining on the $findings_text ($arch, start: $start)"
done_or runs/nih-pretrain/eval/metrics.json bash -c "
  cxrtool pretrain --data data/nih --arch $arch --weights $start --out runs/nih-pretrain ${pre_epochs[*]} ${common[*]} &&
  cxrtool evaluate runs/nih-pretrain --compare chexnet ${bootstrap[*]} --quiet"
pretrains=(--pretrain "$arch ($start start)=runs/nih-pretrain")
if [ "$small" = 0 ] && [ "$generated" = 0 ]; then
  # The report's other two pretrainings: ResNet-50 from ImageNet and our own ResNet-50 from scratch.
  for spec in "resnet50 imagenet" "cxr-resnet50 none"; do
    set -- $spec
    done_or "runs/nih-$1-$2/eval/metrics.json" bash -c "
      cxrtool pretrain --data data/nih --arch $1 --weights $2 --out runs/nih-$1-$2 &&
      cxrtool evaluate runs/nih-$1-$2 --compare chexnet"
    pretrains+=(--pretrain "$1 ($2 start)=runs/nih-$1-$2")
  done
fi

step "3. COVID-19: the arms, on one patient split ($seeds seeds) and with $folds-fold patient cross-validation"
# arm NAME FINETUNE-OPTIONS...: a single-split run trained once per seed (runs/covid-NAME/seed-1..N;
# seed-1 is the plain run) and a cross-validated run, both evaluated.
arm() {
  local name="$1"; shift
  done_or "runs/covid-$name/eval/metrics.json" bash -c "
    cxrtool finetune $* --data data/covid --oversample --seeds $seeds --out runs/covid-$name ${ft_epochs[*]} ${common[*]} &&
    cxrtool evaluate runs/covid-$name ${ext_opt[*]} ${bootstrap[*]} --quiet"
  done_or "runs/covid-$name-cv/eval/metrics.json" bash -c "
    cxrtool finetune $* --data data/covid --oversample --folds $folds --out runs/covid-$name-cv ${ft_epochs[*]} ${common[*]} &&
    cxrtool evaluate runs/covid-$name-cv ${bootstrap[*]} --quiet"
}
arm scratch --from none --arch "$arch" --weights none
[ "$imagenet" = 1 ] && arm imagenet --from none --arch "$arch" --weights imagenet
arm from-nih --from runs/nih-pretrain

if [ "$generated" = 0 ]; then
step "4. The 15-class model (14 NIH findings + COVID-19) from the NIH-pretrained network"
done_or runs/nih-covid15/eval/metrics.json bash -c "
  cxrtool finetune --from runs/nih-pretrain --data data/nih-covid15 --out runs/nih-covid15 ${ft_epochs[*]} ${common[*]} &&
  cxrtool evaluate runs/nih-covid15 ${bootstrap[*]} --quiet"
# Its comparable row: COVID-19 scored on the COVID-19 cache's own test patients (the other arms'
# patients, against Cohen's other pneumonias and normals), not with NIH films as the negatives.
done_or runs/nih-covid15/eval-covid/metrics.json \
  cxrtool evaluate runs/nih-covid15 --data data/covid --out runs/nih-covid15/eval-covid ${bootstrap[*]} --quiet
fi

step "5. One table"
arms=(--arm "From scratch=runs/covid-scratch" --cv "From scratch=runs/covid-scratch-cv")
if [ "$imagenet" = 1 ]; then
  arms+=(--arm "ImageNet only=runs/covid-imagenet" --cv "ImageNet only=runs/covid-imagenet-cv")
else
  why="ImageNet weights not in the torch cache ($weights_file)"
  [ "$generated" = 1 ] && why="tiny-cnn has no ImageNet weights"
  arms+=(--skipped "ImageNet only=$why")
fi
arms+=(--arm "NIH-pretrained ($start start)=runs/covid-from-nih" --cv "NIH-pretrained ($start start)=runs/covid-from-nih-cv")
if [ "$generated" = 0 ]; then
  arms+=(--arm "15-class NIH + COVID-19 (Cohen test patients)=runs/nih-covid15/eval-covid")
  arms+=(--arm "15-class NIH + COVID-19 (combined test set, confounded by source)=runs/nih-covid15")
else
  arms+=(--skipped "15-class NIH + COVID-19=generated data has no COVID-19 collection to combine")
fi
published=(--published chexnet)
# The report's own Table 1 is not shipped (its numbers could not be checked); give it as a CSV
# (columns label,auroc) in REPORT_TABLE1 to put it beside ours.
[ -n "${REPORT_TABLE1:-}" ] && published+=(--published "Report Table 1=$REPORT_TABLE1")
# Each arm against "From scratch" on the same test patients. The 15-class model's row on the COVID-19
# cache is paired like the others; its row on its own combined test split (another cache, NIH films as
# most negatives) is listed with its test set named and not paired.
cxrtool compare "${arms[@]}" "${pretrains[@]}" "${published[@]}" --reference "From scratch" \
  --allow-different-test-sets --out results --overwrite
echo
echo "wrote $PWD/results/table.md"
