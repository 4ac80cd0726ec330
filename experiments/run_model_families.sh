#!/usr/bin/env bash
# Trains every model-family experiment of the README side by side on one machine
# (one process per run, all at once: sized for a GPU) and makes their figures.
#
#   bash experiments/run_model_families.sh DATA_DIR OUT_DIR [smoke]
#
# With "smoke", each run uses its config's _smoke twin (a check of this script in
# about a minute on a CPU). Writes OUT_DIR/<run>/ (summary.json, metrics.jsonl,
# config.json, PNGs; no checkpoints) and OUT_DIR/figures/.
set -u
data=$1; out=$2; smoke=${3:-}
runs=$(mktemp -d); mkdir -p "$out/figures"
export XLA_PYTHON_CLIENT_PREALLOCATE=false
cfg() { if [ -n "$smoke" ]; then echo "experiments/configs/$1_smoke.py"; else echo "experiments/configs/$1.py"; fi; }
train() {  # name config overrides...
  local name=$1 config=$2; shift 2
  python3 experiments/train.py --config "$(cfg "$config")" --workdir "$runs/$name" \
      --config.data_dir="$data" "$@" > "$runs/$name.log" 2>&1
  echo "$name exit $?" >> "$runs/status"
}
for q in 1 2 3; do
  train cvae_q$q cvae_quadrants --config.observed_quadrants=$q &
  train nn_q$q cvae_quadrants --config.observed_quadrants=$q --config.latent_dim=0 &
done
train cvae_mnist cvae_mnist &
train vae_2d vae_latent2d &
train ae_2d ae_vs_vae_2d &
train beta1 beta_vae_traversal &
train beta8 beta_vae_traversal --config.beta=8 &
wait
cat "$runs/status"
fig() { python3 experiments/figures.py --out "$out/figures" "$@" >> "$out/figures/log.txt" 2>&1 \
          || echo "figure $* failed" | tee -a "$out/figures/log.txt"; }
fig --figure=class_grid --workdirs="$runs/cvae_mnist"
fig --figure=traversal --workdirs="$runs/beta1,$runs/beta8"
fig --figure=ae_vs_vae --workdirs="$runs/ae_2d,$runs/vae_2d"
fig --figure=quadrants --workdirs="$runs/nn_q1,$runs/cvae_q1,$runs/nn_q2,$runs/cvae_q2,$runs/nn_q3,$runs/cvae_q3"
for r in "$runs"/*/; do
  name=$(basename "$r"); mkdir -p "$out/$name"
  cp "$r"/*.json "$r"/*.jsonl "$r"/*.png "$out/$name/" 2>/dev/null
  cp "$runs/$name.log" "$out/$name/train.log"
done
cp "$runs/status" "$out/status.txt"
