#!/bin/bash
# Real ACDC scribbles at the paper-scale profile (configs/profiles/paper_gpu.yaml: 256 x 256 slices, batch 16,
# mixed precision, lr 5e-4, up to 200 epochs) on one GPU: full labels, partial CE and partial CE + dense CRF,
# trained side by side (three processes sharing the GPU) through `monai.bundle run training`, segmented with
# `run inferring` and scored on the 20 held-out test patients by scripts/benchmarks/acdc_scribbles.py, which
# then prints the three rows as one table. An optional wall-clock budget per run (minutes) fits each run's
# epochs and cosine into it (--time_budget_minutes).
#
#   bash scripts/benchmarks/acdc_paper_gpu.sh ../shared/data/acdc runs/bench_paper_gpu 5.5
set -euo pipefail
DATA=$(realpath "$1")
OUT=$(realpath -m "${2:-runs/bench_paper_gpu}")
MINUTES=${3:-}
cd "$(dirname "$0")/../.."
COMMON=(--dataset_dir "$DATA" --output_dir "$OUT" --overlay configs/profiles/paper_gpu.yaml
        --spatial_size 256 --batch_size 16 --learning_rate 0.0005 --max_epochs 200)
if [ -n "$MINUTES" ]; then COMMON+=(--time_budget_minutes "$MINUTES"); fi
METHODS=("full" "pCE" "pCE + dense CRF")
mkdir -p "$OUT"
pids=()
for method in "${METHODS[@]}"; do
  log="$OUT/bench_$(echo "$method" | tr -c 'a-zA-Z0-9\n' _).log"
  OMP_NUM_THREADS=4 python scripts/benchmarks/acdc_scribbles.py "${COMMON[@]}" --methods "$method" > "$log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
# every run has finished: this reuses them and their predictions and prints the table of the three
python scripts/benchmarks/acdc_scribbles.py "${COMMON[@]}" --methods "${METHODS[@]}"
