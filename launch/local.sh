#!/usr/bin/env bash
# Run N cooperating processes of segcft-jax on this machine (CPU), e.g. to test multi-host code:
#
#   launch/local.sh 2 --config=configs/synth_chest.py:quick --workdir=runs/mp --stages=data,segmentor
#
# Every process gets --coordinator_address=127.0.0.1:<free port> --num_processes=N
# --process_id=i plus your flags. DEVICES_PER_PROCESS (default 1) fake CPU devices per process;
# logs go to ${LOG_DIR:-.}/process_<i>.log. If one process fails, the others are stopped and
# the script exits with that process's status, so a dead peer never leaves the rest hanging.
set -uo pipefail
if [[ $# -lt 1 ]]; then sed -n '2,10p' "$0"; exit 2; fi
n=$1; shift
python=${PYTHON:-python3}
port=${PORT:-$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
log_dir=${LOG_DIR:-.}
mkdir -p "$log_dir"
pids=()
for ((i = 0; i < n; i++)); do
  XLA_FLAGS="--xla_force_host_platform_device_count=${DEVICES_PER_PROCESS:-1}" \
    "$python" -m segcft_jax.main --coordinator_address="127.0.0.1:$port" --num_processes="$n" \
    --process_id="$i" "$@" >"$log_dir/process_$i.log" 2>&1 &
  pids+=($!)
done
status=0
for ((left = n; left > 0; left--)); do
  wait -n "${pids[@]}"; rc=$?
  if [[ $rc -ne 0 ]]; then
    status=$rc
    kill "${pids[@]}" 2>/dev/null
    echo "a process exited with status $rc; stopped the others (logs in $log_dir)" >&2
    break
  fi
done
wait 2>/dev/null
exit $status
