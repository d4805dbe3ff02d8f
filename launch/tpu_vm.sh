#!/usr/bin/env bash
# Run on every worker of a Cloud TPU VM slice (one process per host), from your workstation:
#
#   launch/tpu_vm.sh TPU_NAME ZONE --config=configs/synth_chest.py:paper --workdir=gs://bucket/runs/chest
#
# Each worker needs this repo at the same path with `pip install -e .[tpu]` done (e.g. with
# `gcloud compute tpus tpu-vm ssh TPU_NAME --worker=all --command=...`). On a multi-host
# slice JAX finds its peers itself (TPU_WORKER_HOSTNAMES); segcft_jax.main detects the slice
# and calls jax.distributed.initialize(). REPO_DIR is the checkout on the workers (default:
# ~/segcft-jax). Re-running the same command resumes from the workdir's checkpoints.
set -euo pipefail
if [[ $# -lt 2 ]]; then sed -n '2,11p' "$0"; exit 2; fi
tpu=$1; zone=$2; shift 2
repo_dir=${REPO_DIR:-'~/segcft-jax'}
args=$(printf ' %q' "$@")
gcloud compute tpus tpu-vm ssh "$tpu" --zone="$zone" --worker=all \
  --command="cd $repo_dir && .venv/bin/python -m segcft_jax.main$args"
