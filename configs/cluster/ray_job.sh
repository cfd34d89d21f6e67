#!/usr/bin/env bash
# One `irpo run` on a Ray cluster, submitted as a Ray job. Copy, edit, run from the repository
# root on a machine that reaches the cluster's dashboard:
#
#     RAY_ADDRESS=http://HEAD:8265 bash configs/cluster/ray_job.sh
#
# What starts what:
# - `ray job submit` starts the driver (`irpo run`) on a node with ENTRYPOINT_GPUS free GPUs;
#   the driver joins the cluster (launch.ray_address: auto) and checks that every node sees
#   the run directory.
# - Sampling and evaluation: Ray Data, launch.ray_replicas vLLM replicas of
#   launch.ray_tensor_parallel_size GPUs each (Ray Data LLM), on any nodes of the cluster;
#   the driver verifies and writes the records.
# - The reference pass and training: processes on the driver's node (its ENTRYPOINT_GPUS GPUs),
#   `accelerate launch` with launch.train_processes processes.
#
# RUN must be on a file system that every node mounts at the same path: the replicas load each
# iteration's model from it. irpo must be installed on every node (the cluster's image:
# pip install 'irpo[ray,vllm]'); the working directory carries the configs.
set -euo pipefail

CONFIG=${CONFIG:-configs/cluster/ray.yaml}
RUN=${RUN:-/shared/runs/gsm8k-8b-ray}     # on the shared file system
ENTRYPOINT_GPUS=${ENTRYPOINT_GPUS:-8}     # the driver's node: reference pass and training
: "${RAY_ADDRESS:?set RAY_ADDRESS to the dashboard of the cluster, e.g. http://HEAD:8265}"

ray job submit --address "$RAY_ADDRESS" \
    --working-dir . \
    --runtime-env-json '{"excludes": [".venv", ".venv-vllm", "runs", "data"], "env_vars": {"TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}}' \
    --entrypoint-num-gpus "$ENTRYPOINT_GPUS" \
    -- irpo run "$CONFIG" -o "$RUN"
