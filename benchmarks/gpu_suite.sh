#!/usr/bin/env bash
# The GPU step-throughput suite in one pass, each part under its own time limit so
# one slow part cannot take the others down. Results go to $1 (one folder per part).
#   bash benchmarks/gpu_suite.sh OUT_DIR
set -u
OUT=${1:?usage: gpu_suite.sh OUT_DIR}
export PYTHONUNBUFFERED=1
B=benchmarks
part() {  # part NAME SECONDS ARGS...: one benchmark, its log beside its results
  local name=$1 limit=$2; shift 2
  mkdir -p "$OUT/$name"
  echo "== $name (limit ${limit}s) $(date -u +%T)"
  timeout "$limit" python "$@" --out "$OUT/$name" 2>&1 | grep -v Warning | tail -40 > "$OUT/$name/log.txt"
  echo "exit ${PIPESTATUS[0]}"; tail -25 "$OUT/$name/log.txt"
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/nvidia-smi.csv" 2>&1
part replicas 130 $B/replicas.py --models reference,iwae_table1 --batch-sizes 20,128 \
  --replicas 1,2,4,8,16 --repeats 3 --block-seconds 0.4
part reference_f32 190 $B/step_throughput.py --model reference --matmul-precision highest \
  --batch-sizes 20,128,1024,4096,16384 --dtypes float32,bfloat16 --steps-per-dispatch 100 \
  --compare-torch --repeats 3 --block-seconds 0.4 --eval-k 5000 --eval-examples 1000
part reference_tf32 110 $B/step_throughput.py --model reference --matmul-precision tensorfloat32 \
  --batch-sizes 20,128,1024,16384 --dtypes float32 --steps-per-dispatch 100 --compare-torch \
  --repeats 3 --block-seconds 0.4
part conv 90 $B/step_throughput.py --model conv --batch-sizes 128,1024,4096 \
  --dtypes float32,bfloat16 --steps-per-dispatch 100 --repeats 3 --block-seconds 0.4
