"""``python -m benchmarks.cluster [--images N] [--nodes K] [--backbone NAME]``: what sharding an
extraction across a Ray cluster costs per image, against a local extraction in the same run.

Starts a real K-node Ray cluster on this machine (``benchmarks.ray_nodes``, one CPU a node),
extracts the first N training photos of the dataset locally, then sharded across the cluster
twice (cold: Ray workers start and load the backbone; warm: they are reused), each time into a
fresh cache entry, and checks the sharded rows are byte-identical to the local ones. Prints a
table and writes ``benchmarks/results/cluster-<time>.json``. On one machine the nodes share its
cores, so the ratio measures the overhead of dispatch, shards and assembly, not a speed-up.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from .common import REPO, RESULTS_DIR, GroupResult, format_group, machine_description, ratio, write_results


def _extract(ds, backbone: str, batch: int):
    from core.features import cache

    cache.clear_cache()
    start = time.perf_counter()
    fs = cache.extract_features(ds, backbone, split="train", batch_size=batch)
    seconds = time.perf_counter() - start
    import numpy as np

    return seconds, np.asarray(fs.X).tobytes(), fs.meta["checksums"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cluster", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=400, help="training photos to extract (default 400)")
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--weights-dir", default=os.environ.get("TRANSFER_LAB_WEIGHTS_DIR")
                   or str(REPO.parent / "shared" / "keras-weights"))
    p.add_argument("--dataset", default=str(REPO.parent / "shared" / "datasets" / "cats_vs_dogs"))
    p.add_argument("--results-dir", default=str(RESULTS_DIR))
    args = p.parse_args(argv)
    if not Path(args.dataset).is_dir():
        print(f"Dataset folder not found: {args.dataset} (pass --dataset)", file=sys.stderr)
        return 2
    home = tempfile.mkdtemp(prefix="tl-bench-cluster-")
    os.environ.update({"TRANSFER_LAB_HOME": home, "TRANSFER_LAB_WEIGHTS_DIR": args.weights_dir,
                       "TRANSFER_LAB_ENGINE": os.environ.get("TRANSFER_LAB_ENGINE") or "tensorflow"})
    from core.data.dataset import scan_folder, subset
    from core.runs import cluster

    from .ray_nodes import local_ray_cluster

    full = scan_folder(args.dataset)
    per_class = max(1, args.images // max(1, len(full.classes)))
    ds = subset(full, per_class, seed=0)
    n = len(ds.paths("train"))
    result = GroupResult("cluster", quick=False)
    started = time.perf_counter()
    os.environ.pop(cluster.ADDRESS_ENV, None)
    local_s, local_bytes, local_sums = _extract(ds, args.backbone, args.batch)
    shard = max(args.batch, n // (2 * args.nodes) // args.batch * args.batch)
    os.environ.update({"TRANSFER_LAB_SHARD_MIN_IMAGES": "1", "TRANSFER_LAB_SHARD_IMAGES": str(shard)})
    with local_ray_cluster(nodes=args.nodes, cpus=1) as info:
        os.environ[cluster.ADDRESS_ENV] = info["address"]
        cold_s, cold_bytes, cold_sums = _extract(ds, args.backbone, args.batch)
        warm_s, warm_bytes, warm_sums = _extract(ds, args.backbone, args.batch)
        os.environ.pop(cluster.ADDRESS_ENV, None)
    same = local_bytes == cold_bytes == warm_bytes and local_sums == cold_sums == warm_sums
    result.add("photos, shards of", f"{n:,}, {shard:,} ({-(-n // shard)} shards on {args.nodes} nodes)")
    result.add("local extraction", f"{local_s:.1f} s = {1000 * local_s / n:.1f} ms/image", local_s / n)
    result.add("sharded, cold (workers start)", f"{cold_s:.1f} s = {1000 * cold_s / n:.1f} ms/image", cold_s / n)
    result.add("sharded, warm (workers reused)", f"{warm_s:.1f} s = {1000 * warm_s / n:.1f} ms/image", warm_s / n)
    result.add("sharded warm / local", f"{ratio(warm_s, local_s):.2f}", ratio(warm_s, local_s))
    result.add("overhead per image, warm", f"{1000 * (warm_s - local_s) / n:+.1f} ms", (warm_s - local_s) / n)
    result.add("rows byte-identical to local", "yes" if same else "NO", target="yes", ok=same)
    result.figures.update(images=n, shard_images=shard, nodes=args.nodes, backbone=args.backbone,
                          local_s=local_s, cold_s=cold_s, warm_s=warm_s, identical=same)
    result.notes.append("One machine: the nodes share its cores, so this is the overhead of dispatching shards, "
                        "moving rows through Ray's object store and assembling the entry, not a speed-up.")
    result.seconds = time.perf_counter() - started
    print(format_group(result))
    path = write_results(result, machine_description(), vars(args), Path(args.results_dir))
    print(f"results: {path}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
