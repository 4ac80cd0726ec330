#!/usr/bin/env bash
# The VQ-VAE experiment (README, "VQ-VAE") in one pass, sized for a GPU: both
# VQ-VAEs side by side (EMA + restarts, and the plain codebook loss), then a learned
# prior on each side by side, then the table (vqvae_report.py) and the classified
# prior samples (vqvae_samples.py, at T = 1, 0.9, 0.8).
#
#   bash experiments/run_vqvae.sh DATA_DIR OUT_DIR [smoke]
#
# The prior's size and schedule come from the environment (defaults in brackets):
# PRIOR_WIDTH [256], PRIOR_DEPTH [6], PRIOR_HEADS [8], PRIOR_EPOCHS [100], with a
# cosine decay of the learning rate; VQVAE_EPOCHS [20]. With "smoke", every run
# uses its config's _smoke twin and the classifier trains for one epoch (a check of
# this script in a few minutes on a CPU). Writes OUT_DIR/{vqvae_ema,vqvae_loss,
# prior_ema,prior_loss}/ (summary.json, metrics.jsonl, config.json, PNGs, train.log;
# no checkpoints), the report, samples_{ema,loss}/ and status.txt.
set -u
data=${1:?usage: run_vqvae.sh DATA_DIR OUT_DIR [smoke]}; out=${2:?usage: run_vqvae.sh DATA_DIR OUT_DIR [smoke]}
smoke=${3:-}
runs=$(mktemp -d); mkdir -p "$out"
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
if [ -n "$smoke" ]; then
  suffix=_smoke; vq_args=(); prior_args=(); classifier_epochs=1; num_samples=50
else
  suffix=""; vq_args=(--config.epochs="${VQVAE_EPOCHS:-20}")
  prior_args=(--config.prior_width="${PRIOR_WIDTH:-256}" --config.prior_depth="${PRIOR_DEPTH:-6}"
              --config.prior_heads="${PRIOR_HEADS:-8}" --config.epochs="${PRIOR_EPOCHS:-100}"
              --config.lr_schedule=cosine)
  classifier_epochs=4; num_samples=1000
fi
train() {  # name config overrides...
  local name=$1 config=$2; shift 2
  echo "== $name $(date -u +%T)"
  python3 experiments/train.py --config "experiments/configs/$config$suffix.py" \
      --workdir "$runs/$name" --config.data_dir="$data" "$@" > "$runs/$name.log" 2>&1
  echo "$name exit $?" | tee -a "$runs/status"
}
train vqvae_ema vqvae_mnist "${vq_args[@]}" &
train vqvae_loss vqvae_mnist "${vq_args[@]}" --config.codebook_update=loss \
    --config.restart_after_steps=0 &
wait
for v in ema loss; do
  train prior_$v vqvae_prior --config.vqvae_workdir="$runs/vqvae_$v" "${prior_args[@]}" &
done
wait
python3 experiments/vqvae_report.py --vqvae "ema=$runs/vqvae_ema,loss=$runs/vqvae_loss" \
    --priors "ema=$runs/prior_ema,loss=$runs/prior_loss" --out "$out" --data_dir "$data" \
    > "$out/report.log" 2>&1 || echo "vqvae_report failed (see report.log)" | tee -a "$runs/status"
for v in ema loss; do  # one after the other: the first trains the classifier, the second reads it
  python3 experiments/vqvae_samples.py --workdir "$runs/prior_$v" --classifier_dir "$runs/classifier" \
      --classifier_epochs "$classifier_epochs" --num_samples "$num_samples" --data_dir "$data" \
      --temperatures 1,0.9,0.8 --out "$out/samples_$v" > "$out/samples_$v.log" 2>&1 \
    || echo "vqvae_samples $v failed (see samples_$v.log)" | tee -a "$runs/status"
done
for r in vqvae_ema vqvae_loss prior_ema prior_loss; do
  mkdir -p "$out/$r"
  cp "$runs/$r"/*.json "$runs/$r"/*.jsonl "$runs/$r"/*.png "$out/$r/" 2>/dev/null
  cp "$runs/$r.log" "$out/$r/train.log"
done
cp "$runs/classifier/classifier.json" "$out/" 2>/dev/null
cp "$runs/status" "$out/status.txt"
cat "$out/status.txt"
