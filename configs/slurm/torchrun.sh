#!/bin/bash
# torchrun recipe: the same run on N nodes x G GPUs without SLURM. Run this on every node with its NODE_RANK:
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 bash configs/slurm/torchrun.sh      # on node0
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=node0 bash configs/slurm/torchrun.sh      # on node1
# torchrun sets LOCAL_RANK / RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT; Lightning's TorchElasticEnvironment
# detects them (TORCHELASTIC_RUN_ID) and does not launch processes itself. devices / num_nodes must match.
set -euo pipefail
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
GPUS=${GPUS:-$(nvidia-smi -L 2>/dev/null | wc -l)}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29500}
CONFIG=${CONFIG:-configs/gan/dcgan_cifar10.yaml}

torchrun --nnodes "${NNODES}" --node_rank "${NODE_RANK}" --nproc_per_node "${GPUS}" \
  --master_addr "${MASTER_ADDR}" --master_port "${MASTER_PORT}" \
  -m aigc_lightning fit --config "${CONFIG}" \
  --trainer.accelerator gpu --trainer.devices "${GPUS}" --trainer.num_nodes "${NNODES}" --trainer.strategy ddp \
  "$@"
