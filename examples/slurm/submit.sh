#!/bin/bash
# Submit an infer-eval run as a Slurm job array of SHARDS shards and a merge
# that runs when all of them succeeded. Run from the project root:
#   SHARDS=8 examples/slurm/submit.sh experiment=smoke
# Environment: SHARDS (default 4), WORK (shard folders, default ./shards;
# on a cluster, a shared file system), INFER_EVAL (the binary, default
# infer-eval on PATH). Prints the two job ids; the merged run folder is
# $WORK/merged.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
SHARDS="${SHARDS:-4}"
export WORK="${WORK:-$PWD/shards}" INFER_EVAL="${INFER_EVAL:-infer-eval}"
mkdir -p "$WORK"
array=$(sbatch --parsable --export=ALL --array="0-$((SHARDS - 1))" "$here/eval-shard.sbatch" "$@")
merge=$(sbatch --parsable --export=ALL --dependency="afterok:$array" "$here/merge.sbatch")
echo "array $array"
echo "merge $merge"
