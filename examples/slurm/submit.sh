#!/bin/bash
# Submit the shard array, then the merge job that waits for all of it.
set -euo pipefail
array=$(sbatch --parsable examples/slurm/aicp-array.sbatch)
sbatch --dependency=afterok:"${array%%;*}" examples/slurm/merge.sbatch
