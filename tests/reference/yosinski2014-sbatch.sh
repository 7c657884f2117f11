#!/bin/bash

# Parameters
#SBATCH --array=0-27%28
#SBATCH --cpus-per-task=8
#SBATCH --dependency=afterok:7_0
#SBATCH --error=<jobs>/yosinski2014/slurm/%A_%a_0_log.err
#SBATCH --gpus-per-node=1
#SBATCH --job-name=transferbench-<token>
#SBATCH --mem=64G
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --open-mode=append
#SBATCH --output=<jobs>/yosinski2014/slurm/%A_%a_0_log.out
#SBATCH --requeue
#SBATCH --signal=USR2@120
#SBATCH --time=2880
#SBATCH --wckey=''

# command
export SUBMITIT_EXECUTOR=slurm
srun --unbuffered --output <jobs>/yosinski2014/slurm/%A_%a_%t_log.out --error <jobs>/yosinski2014/slurm/%A_%a_%t_log.err python -u -m submitit.core._submit <jobs>/yosinski2014/slurm
