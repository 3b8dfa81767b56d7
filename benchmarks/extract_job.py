"""One feature-extraction job in a fresh process, for honest peak-memory figures.

``python -m benchmarks.extract_job --dataset-json SCAN.json --images N`` loads the
scanned dataset (no rescan: the scan's own memory stays out of the figure), keeps
N training images, extracts their features with ``core.features.cache`` into the data
directory it is given (``TRANSFER_LAB_HOME``), and prints one JSON line: seconds,
images/s, the peak resident memory (``VmHWM`` and ``ru_maxrss``) before and
after the extraction, and the resident memory after each batch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    from benchmarks.common import current_rss_bytes, peak_rss_bytes

    p = argparse.ArgumentParser(prog="python -m benchmarks.extract_job")
    p.add_argument("--dataset-json", required=True)
    p.add_argument("--images", type=int, required=True)
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--weights", default="imagenet", help="imagenet or random")
    p.add_argument("--pooling", default="avg")
    p.add_argument("--seed", type=int, default=1337)
    args = p.parse_args(argv)

    from core import atomic
    from core.nets import backbones
    from core.data.dataset import Dataset, subset
    from core.features.cache import extract_features

    ds = Dataset.from_json(atomic.read_json(args.dataset_json))
    ds = subset(ds, max(1, args.images // ds.num_classes), args.seed, splits=("train",))
    weights = None if args.weights == "random" else args.weights
    t0 = time.perf_counter()
    bb = backbones.load_backbone(args.backbone, weights, seed=args.seed)
    load_s = time.perf_counter() - t0
    before = peak_rss_bytes()
    curve: list[tuple[int, int | None]] = []  # (images done, resident memory now)

    def progress(p):
        curve.append((p.done, current_rss_bytes()))

    t1, c1 = time.perf_counter(), time.process_time()
    fs = extract_features(ds, args.backbone, split="train", weights=weights, pooling=args.pooling,
                          seed=args.seed, loaded=bb, progress=progress)
    seconds, cpu_seconds = time.perf_counter() - t1, time.process_time() - c1
    after = peak_rss_bytes()
    n = len(fs.paths)
    print(json.dumps({
        "images": n, "backbone": args.backbone, "from_cache": fs.from_cache, "load_seconds": load_s,
        "seconds": seconds, "cpu_seconds": cpu_seconds, "images_per_s": n / seconds if seconds > 0 else None,
        "feature_bytes": int(fs.X.nbytes), "peak_before_extract": before, "peak": after,
        "rss_curve": curve,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
