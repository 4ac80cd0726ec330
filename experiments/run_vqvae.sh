#!/usr/bin/env bash
# The VQ-VAE experiment (README, "VQ-VAE") in one pass, sized for a GPU: both
# VQ-VAEs side by side (EMA + restarts, and the plain codebook loss), then a learned
# prior on each side by side, then the table (vqvae_report.py) and the classified
# prior samples (vqvae_samples.py, at T = 1, 0.9, 0.8).
#
#   bash experiments/run_vqvae.sh DATA_DIR OUT_DIR [smoke]
#
# The prior's size and schedule come from the environment (defaults in brackets):
# PRIOR_WIDTH [256], PRIOR_DEPTH [6], PRIOR_HEADS [8], PRIOR_EPOCHS [100],
# PRIOR_DROPOUT [0.1], with a cosine decay of the learning rate; VQVAE_EPOCHS
# [20]. With "smoke", every run
# uses its config's _smoke twin and the classifier trains for one epoch (a check of
# this script in a few minutes on a CPU). Everything is written into OUT_DIR as it
# happens, so a killed job keeps what it did: runs/<name>/ (the workdirs, with
# checkpoints: train.py resumes them), <name>.log, the report, samples_{ema,loss}/,
# status.txt. Exits 1 when any step failed (status.txt says which). To bring the
# results back without the checkpoints: tar czf R.tgz --exclude=checkpoints OUT_DIR.
set -u
usage="usage: run_vqvae.sh DATA_DIR OUT_DIR [smoke]"
case "${3:-}" in smoke) smoke=1 ;; "") smoke="" ;; *) echo "$usage" >&2; exit 2 ;; esac
data=$(realpath "${1:?$usage}"); mkdir -p "${2:?$usage}"; out=$(realpath "$2")
cd "$(dirname "$0")/.."  # the repository root: train.py and the configs live there
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
if [ -n "$smoke" ]; then
  suffix=_smoke; vq_args=(); prior_args=(); classifier_epochs=1; num_samples=50
else
  suffix=""; vq_args=(--config.epochs="${VQVAE_EPOCHS:-20}" --config.keep_checkpoints=1)
  prior_args=(--config.keep_checkpoints=1 --config.prior_width="${PRIOR_WIDTH:-256}" --config.prior_depth="${PRIOR_DEPTH:-6}"
              --config.prior_heads="${PRIOR_HEADS:-8}" --config.epochs="${PRIOR_EPOCHS:-100}"
              --config.prior_dropout="${PRIOR_DROPOUT:-0.1}"
              --config.lr_schedule=cosine)
  classifier_epochs=4; num_samples=1000
fi
status="$out/status.txt"; : > "$status"
step() {  # step NAME COMMAND...: runs it, logs to OUT_DIR/NAME.log, records its exit status
  local name=$1; shift
  echo "== $name $(date -u +%T)"
  "$@" > "$out/$name.log" 2>&1
  local rc=$?
  echo "$name exit $rc" | tee -a "$status"
  return $rc
}
train() {  # train NAME CONFIG OVERRIDES...
  local name=$1 config=$2; shift 2
  step "$name" python3 experiments/train.py --config "experiments/configs/$config$suffix.py" \
      --workdir "$out/runs/$name" --config.data_dir="$data" "$@"
}
# ${a[@]+"${a[@]}"}: an empty array under set -u on bash < 4.4.
train vqvae_ema vqvae_mnist ${vq_args[@]+"${vq_args[@]}"} &
train vqvae_loss vqvae_mnist ${vq_args[@]+"${vq_args[@]}"} --config.codebook_update=loss \
    --config.restart_after_steps=0 &
wait
for v in ema loss; do
  if grep -qx "vqvae_$v exit 0" "$status"; then
    train prior_$v vqvae_prior --config.vqvae_workdir="$out/runs/vqvae_$v" \
        ${prior_args[@]+"${prior_args[@]}"} &
  fi
done
wait
step report python3 experiments/vqvae_report.py --vqvae "ema=$out/runs/vqvae_ema,loss=$out/runs/vqvae_loss" \
    --priors "ema=$out/runs/prior_ema,loss=$out/runs/prior_loss" --out "$out" --data_dir "$data"
for v in ema loss; do  # one after the other: the first trains the classifier, the second reads it
  step samples_$v python3 experiments/vqvae_samples.py --workdir "$out/runs/prior_$v" \
      --classifier_dir "$out/classifier" --classifier_epochs "$classifier_epochs" \
      --num_samples "$num_samples" --data_dir "$data" --temperatures 1,0.9,0.8 \
      --out "$out/samples_$v"
done
cat "$status"
if grep -qv " exit 0$" "$status" || [ "$(wc -l < "$status")" -ne 7 ]; then exit 1; fi
