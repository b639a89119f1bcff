"""An infer-eval run as Ray tasks: one task per shard, then the merge.

    python examples/ray/run_sharded.py --shards 4 --work shards -- experiment=smoke

Each task runs `infer-eval eval OVERRIDES --shard-index i --shard-count n
--run-dir WORK/shard-i` (Ray has no shard variable, so the index and count
are flags); a task Ray retries (max_retries) resumes its folder. On a
cluster, WORK must be a file system every node sees, and infer-eval must be
on every node. `--address auto` joins a running cluster; by default a local
one is started. Prints the merged run's summary and the node of each shard.
"""

import argparse
import os
import subprocess
import sys

import ray


@ray.remote(num_cpus=1, max_retries=2)
def run_shard(infer_eval, index, count, work, overrides, cwd):
    folder = os.path.join(work, f"shard-{index}")
    cmd = [infer_eval, "eval", *overrides, "--shard-index", str(index),
           "--shard-count", str(count), "--run-dir", folder]
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"shard {index}: {' '.join(cmd)} failed:\n{done.stderr}")
    return folder, ray.get_runtime_context().get_node_id()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--work", default="shards", help="folder of the shard run folders")
    ap.add_argument("--infer-eval", default="infer-eval", help="the binary (default: on PATH)")
    ap.add_argument("--address", default=None, help="a Ray cluster to join (default: start a local one)")
    ap.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local cluster")
    ap.add_argument("overrides", nargs="*", help="eval overrides, after --")
    a = ap.parse_args()
    work = os.path.abspath(a.work)
    os.makedirs(work, exist_ok=True)
    ray.init(address=a.address, num_cpus=a.num_cpus, include_dashboard=False)
    refs = [run_shard.remote(a.infer_eval, i, a.shards, work, a.overrides, os.getcwd())
            for i in range(a.shards)]
    results = ray.get(refs)
    for folder, node in results:
        print(f"shard {folder} ran on node {node}")
    merged = os.path.join(work, "merged")
    done = subprocess.run([a.infer_eval, "merge", *[f for f, _ in results], "--out", merged],
                          capture_output=True, text=True)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    ray.shutdown()
    sys.exit(done.returncode)


if __name__ == "__main__":
    main()
