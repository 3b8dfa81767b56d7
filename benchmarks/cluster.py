"""``python -m benchmarks.cluster [--images N] [--nodes K] [--backbone NAME]``: what sharding an
extraction across a Ray cluster costs per image, against a local extraction in the same run.

Starts a real K-node Ray cluster on this machine (``benchmarks.ray_nodes``, one CPU a node),
extracts N training photos (a seeded subset) locally twice (the backbone loaded once; the first
pass traces it), then sharded across the cluster twice (cold: Ray workers start and load the
backbone; warm: they are reused), each time into a fresh cache entry, and checks the sharded rows are byte-identical to the local ones. Prints a
table and writes ``benchmarks/results/cluster-<time>.json``. On one machine the nodes share its
cores: the ratio shows the overhead of dispatch, shards and assembly (and how K one-CPU workers
use the cores against one process), not what more machines would buy.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from .common import add_data_args, GroupResult, format_group, machine_description, ratio, write_results


def _extract(ds, backbone: str, batch: int, loaded=None):
    from core.features import cache

    cache.clear_cache()
    start = time.perf_counter()
    fs = cache.extract_features(ds, backbone, split="train", batch_size=batch, loaded=loaded)
    seconds = time.perf_counter() - start
    import numpy as np

    return seconds, np.asarray(fs.X).tobytes(), fs.meta["checksums"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cluster", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=400, help="training photos to extract (default 400)")
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--batch", type=int, default=32)
    add_data_args(p)
    args = p.parse_args(argv)
    if not Path(args.dataset).is_dir():
        print(f"Dataset folder not found: {args.dataset} (pass --dataset)", file=sys.stderr)
        return 2
    home = tempfile.mkdtemp(prefix="tl-bench-cluster-")
    os.environ.update({"TRANSFER_LAB_HOME": home, "TRANSFER_LAB_WEIGHTS_DIR": args.weights_dir,
                       "TRANSFER_LAB_ENGINE": os.environ.get("TRANSFER_LAB_ENGINE") or "tensorflow"})
    from core.data.dataset import scan_folder, subset
    from core import settings

    from .ray_nodes import local_ray_cluster

    full = scan_folder(args.dataset)
    per_class = max(1, args.images // max(1, len(full.classes)))
    ds = subset(full, per_class, seed=0)
    n = len(ds.paths("train"))
    result = GroupResult("cluster", quick=False)
    started = time.perf_counter()
    os.environ.pop(settings.RAY_ADDRESS_ENV, None)
    from core.nets import backbones

    bb = backbones.load_backbone(args.backbone)  # loaded once: warm local passes, as the nodes' workers keep theirs
    first_s, local_bytes, local_sums = _extract(ds, args.backbone, args.batch, bb)
    local_s, again_bytes, _ = _extract(ds, args.backbone, args.batch, bb)
    shard = max(args.batch, n // (2 * args.nodes) // args.batch * args.batch)
    os.environ.update({"TRANSFER_LAB_SHARD_MIN_IMAGES": "1", "TRANSFER_LAB_SHARD_IMAGES": str(shard)})
    with local_ray_cluster(nodes=args.nodes, cpus=1) as info:
        os.environ[settings.RAY_ADDRESS_ENV] = info["address"]
        cold_s, cold_bytes, cold_sums = _extract(ds, args.backbone, args.batch, bb)
        warm_s, warm_bytes, warm_sums = _extract(ds, args.backbone, args.batch, bb)
        os.environ.pop(settings.RAY_ADDRESS_ENV, None)
    same = again_bytes == local_bytes == cold_bytes == warm_bytes and local_sums == cold_sums == warm_sums
    result.add("photos, shards of", f"{n:,}, {shard:,} ({-(-n // shard)} shards on {args.nodes} nodes)")
    result.add("local, first pass (traces the network)", f"{first_s:.1f} s = {1000 * first_s / n:.1f} ms/image",
               first_s / n)
    result.add("local, warm", f"{local_s:.1f} s = {1000 * local_s / n:.1f} ms/image", local_s / n)
    result.add("sharded, cold (workers start)", f"{cold_s:.1f} s = {1000 * cold_s / n:.1f} ms/image", cold_s / n)
    result.add("sharded, warm (workers reused)", f"{warm_s:.1f} s = {1000 * warm_s / n:.1f} ms/image", warm_s / n)
    result.add("sharded warm / local", f"{ratio(warm_s, local_s):.2f}", ratio(warm_s, local_s))
    result.add("overhead per image, warm", f"{1000 * (warm_s - local_s) / n:+.1f} ms", (warm_s - local_s) / n)
    result.add("rows byte-identical to local", "yes" if same else "NO", target="yes", ok=same)
    result.figures.update(images=n, shard_images=shard, nodes=args.nodes, backbone=args.backbone,
                          local_first_s=first_s, local_s=local_s, cold_s=cold_s, warm_s=warm_s, identical=same)
    result.notes.append("One machine: the nodes share its cores, so the ratio mixes the cost of dispatching shards, "
                        "moving rows through Ray's object store and assembling the entry with how K single-CPU Ray "
                        "workers use the cores against one local process; it is not a multi-machine speed-up.")
    result.seconds = time.perf_counter() - started
    print(format_group(result))
    path = write_results(result, machine_description(), vars(args), Path(args.results_dir))
    print(f"results: {path}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
