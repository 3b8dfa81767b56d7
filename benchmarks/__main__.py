"""``python -m benchmarks [--quick] [--only speed,accuracy,app,scale,engine,int8] [--items 3,4]``

Runs the benchmark groups, prints one table per group, and writes
``benchmarks/results/<group>-<timestamp>.json`` (figures + machine description).

Weights come from ``--weights-dir`` (else ``$TRANSFER_LAB_WEIGHTS_DIR``, else
``../shared/keras-weights`` beside the repo); the dataset from ``--dataset``
(default ``../shared/datasets/cats_vs_dogs``). The data directory
(``TRANSFER_LAB_HOME``) is a fresh temporary folder unless ``--home`` is given,
so first-run and cached timings are honest; it is removed afterwards unless
``--keep-home``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .common import GROUPS, REPO, RESULTS_DIR, Context, GroupResult, describe_machine, format_group, log, \
    machine_description, timestamp, write_results

ORDER = ("scale", "app", "engine", "speed", "accuracy", "int8")  # shortest first; app reuses the scale jobs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="small subsets (limit_per_class) and fewer epochs: minutes, not an hour")
    p.add_argument("--only", default=",".join(GROUPS),
                   help=f"comma-separated groups to run, from {', '.join(GROUPS)} (default: all)")
    p.add_argument("--per-class", type=int, default=None,
                   help="accuracy: train and validate on this many images per class and split")
    p.add_argument("--items", default=None,
                   help="comma-separated item numbers to run in each group, e.g. 3,4 (default: all); "
                        "an item another one needs runs with it")
    p.add_argument("--precisions", default="",
                   help="accuracy: also run the table under each of these training precisions (engine auto), "
                        "e.g. float32,auto: wall time and accuracy per precision (core.train.precision)")
    p.add_argument("--weights-dir", default=None, help="folder of weights and local backbones")
    p.add_argument("--dataset", default=str(REPO.parent / "shared" / "datasets" / "cats_vs_dogs"))
    p.add_argument("--home", default=None, help="TRANSFER_LAB_HOME to use (default: a fresh temporary folder)")
    p.add_argument("--keep-home", action="store_true", help="keep the temporary data directory")
    p.add_argument("--results-dir", default=str(RESULTS_DIR))
    args = p.parse_args(argv)
    args.groups = [g.strip() for g in args.only.split(",") if g.strip()]
    args.precision_list = tuple(x.strip() for x in args.precisions.split(",") if x.strip())
    from core.train.precision import CHOICES

    if any(x not in CHOICES for x in args.precision_list):
        p.error(f"--precisions takes {', '.join(CHOICES)}")
    args.item_numbers = frozenset(i.strip() for i in args.items.split(",") if i.strip()) if args.items else None
    unknown = [g for g in args.groups if g not in GROUPS]
    if unknown or not args.groups:
        p.error(f"unknown group(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(GROUPS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    weights = args.weights_dir or os.environ.get("TRANSFER_LAB_WEIGHTS_DIR") or str(
        REPO.parent / "shared" / "keras-weights")
    weights_dir = Path(weights).expanduser().resolve()
    dataset = Path(args.dataset).expanduser().resolve()
    if not dataset.is_dir():
        print(f"Dataset folder not found: {dataset} (pass --dataset)", file=sys.stderr)
        return 2
    if not weights_dir.is_dir():
        print(f"Weights folder not found: {weights_dir} (pass --weights-dir)", file=sys.stderr)
        return 2
    temp_home = args.home is None
    home = Path(args.home).expanduser().resolve() if args.home else Path(tempfile.mkdtemp(prefix="transfer-lab-bench-"))
    home.mkdir(parents=True, exist_ok=True)
    os.environ["TRANSFER_LAB_WEIGHTS_DIR"] = str(weights_dir)
    os.environ["TRANSFER_LAB_HOME"] = str(home)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))

    machine = machine_description()
    settings = {"quick": args.quick, "per_class": args.per_class, "items": args.items, "groups": args.groups,
                "precisions": args.precisions,
                "dataset": str(dataset), "weights_dir": str(weights_dir), "home": str(home), "fresh_home": temp_home,
                "command": " ".join([Path(sys.executable).name, "-m", "benchmarks", *sys.argv[1:]])}
    print(f"Transfer Lab benchmarks{' (--quick)' if args.quick else ''}: {', '.join(args.groups)}")
    print(f"machine: {describe_machine(machine)}")
    print(f"dataset: {dataset}\nweights: {weights_dir}\ndata directory: {home}"
          f"{' (fresh, temporary)' if temp_home else ''}\n", flush=True)

    ctx = Context(dataset=dataset, weights_dir=weights_dir, home=home, quick=args.quick, per_class=args.per_class,
                  items=args.item_numbers, precisions=args.precision_list)
    stamp = timestamp()
    outputs: list[tuple[GroupResult, Path]] = []
    failed = False
    try:
        for group in [g for g in ORDER if g in args.groups]:
            log(f"group {group} starts")
            t0 = time.perf_counter()
            try:
                module = __import__(f"benchmarks.{group}", fromlist=["run"])
                result = module.run(ctx)
            except Exception as exc:  # noqa: BLE001 - report, keep going with the other groups
                import traceback

                result = GroupResult(group, args.quick)
                result.add(group, f"error: {type(exc).__name__}: {exc}", None, "runs", False)
                result.figures["error"] = traceback.format_exc()
            result.seconds = time.perf_counter() - t0
            group_machine = {**machine, "load_average_end": list(os.getloadavg())}
            path = write_results(result, group_machine, settings, Path(args.results_dir), stamp)
            outputs.append((result, path))
            failed |= any(r.ok is False for r in result.rows)
            print(format_group(result), flush=True)
            print(f"\n(written to {path})\n", flush=True)
    finally:
        if temp_home and not args.keep_home:
            shutil.rmtree(home, ignore_errors=True)
    if len(outputs) > 1:
        print("=" * 30 + " summary " + "=" * 30)
        print(f"machine: {describe_machine(machine)}\n")
        for result, path in outputs:
            print(format_group(result))
            print(f"\n({path})\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
