"""Command line: ``python -m core train|runs|show|cancel|backbones|extract|engine|advise|predict|report``.

Runs any strategy headless on a dataset folder and writes a normal run, so
results from scripts and the dashboard live side by side in one run store.
"""

from __future__ import annotations

import argparse
import json
import sys

from core import settings
from core.errors import TransferLabError
from core.analysis import advisor
from core.data import scan_folder
from core.features import extract_features
from core.nets import DEFAULT_BACKBONE, POOLINGS, backbones, engine
from core.runs import RunStore, compare, jobs, run_summary, uncertainty_lines, with_uncertainty, worker
from core.serve import inference, predict, trust
from core.train import (FILLS, MAX_FOLDS, OPTIMIZERS, Augment, folds, load_dataset, plans, precision, registry,
                        uses_backbone)


def train_config(args):
    """The checked ``StrategyConfig`` the ``train`` options describe."""
    overrides = {k: v for k, v in {
        "dataset": args.dataset, "backbone": args.backbone, "weights": args.weights,
        "input_size": args.input_size, "pooling": args.pooling, "epochs": args.epochs,
        "batch_size": args.batch_size, "learning_rate": args.lr, "optimizer": args.optimizer,
        "fine_tune_layers": args.fine_tune_layers, "fine_tune_epochs": args.fine_tune_epochs,
        "limit_per_class": args.limit_per_class, "seed": args.seed, "feature_layer": args.feature_layer, "precision": args.precision,
    }.items() if v is not None}
    if args.class_weights in ("on", "off"):  # auto: the config's default, decided from the classes
        overrides["class_weights"] = args.class_weights == "on"
    augment = _augment_options(args)
    if augment is not None:
        overrides["augment"] = augment
    return registry.make_config(args.strategy, "classic" if args.classic else "modern", **overrides)


def fold_count(args, cfg) -> int:
    """``--folds``: a number, or ``auto`` for ``core.train.folds.default_folds`` of the dataset as the
    config scans it (the rule: repeated splits under ``SMALL_VALIDATION`` validation photos)."""
    if args.folds != "auto":
        return int(args.folds)

    ds = load_dataset(cfg)
    k = folds.default_folds(ds)
    print(f"--folds auto: {k} ({folds.default_reason(ds)})", file=sys.stderr)
    return k


def _folds_arg(text: str) -> str | int:
    if text == "auto":
        return text
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of splits or 'auto', not {text!r}") from None
    if k != 1 and not 2 <= k <= MAX_FOLDS:
        raise argparse.ArgumentTypeError(f"expected 1 (the dataset's own split) to {MAX_FOLDS}, or 'auto'")
    return k


def train_runs(args) -> list[dict]:
    """The configs ``train`` queues: one, or with ``--folds K`` one per fold under one fold group."""
    cfg = train_config(args)
    k = fold_count(args, cfg)
    if k < 2:
        return [cfg.to_dict()]
    base = {**cfg.to_dict(), **({"name": args.name} if args.name else {})}
    return folds.fold_configs([base], k, scheme=args.fold_scheme, seed=args.fold_seed,
                              keep_models=args.keep_fold_models)


def _train(args) -> int:
    configs = train_runs(args)
    if len(configs) > 1:
        return _train_folds(args, configs)
    cfg = configs[0]
    run = RunStore().create(cfg, name=args.name)
    print(f"run {run.id} -> {run.dir}")
    if args.background:
        jobs.submit(run)
        print("queued; follow it with `python -m core show", run.id + "`")
        return 0
    code = worker.main([str(run.dir)])
    print(json.dumps({k: v for k, v in (run.metrics() or {}).items()
                      if k in ("val_accuracy", "val_loss", "train_seconds", "trainable_params", "precision")}, indent=2))

    print("\n".join(uncertainty_lines(run.metrics())))
    status = run.status()
    print(f"state: {status['state']}")
    if status.get("reason"):
        print(f"reason: {status['reason']}", file=sys.stderr if code else sys.stdout)
    return code


def _train_folds(args, configs: list[dict]) -> int:
    """Create the k fold runs; queue them (``--background``) or run them one after another here, then
    print each fold's accuracy and their mean ± spread."""
    store = RunStore()
    runs = [store.create(cfg, name=plans.run_name(cfg)) for cfg in configs]
    group = configs[0][folds.FOLD_GROUP_KEY]
    print(f"fold group {group}: {len(runs)} runs ({configs[0]['fold_scheme']}, split seed {configs[0]['fold_seed']})")
    for run in runs:
        print(f"run {run.id} -> {run.dir}")
    if args.background:
        for run in runs:
            jobs.submit(run)
        print(f"queued; follow them with `python -m core runs` (fold group {group})")
        return 0
    code = 0
    for run in runs:
        code = worker.main([str(run.dir)]) or code
        m = run.metrics() or {}
        acc = f"{m['val_accuracy']:.1%} on {m.get('val_images', '?')} photos" if "val_accuracy" in m else "-"
        print(f"fold {folds.fold_label(run.config)}: {run.status()['state']}, accuracy {acc}")
    for _, row in compare.fold_summary(compare.comparison_table(runs)).iterrows():
        print(f"{row['Strategy']}: {folds.describe(row)}")
    return code


def _augment_options(args) -> dict | None:
    """The augmentation the options set, over the defaults (None: none given, the strategy's own)."""
    from dataclasses import asdict


    given = {"flip": "" if args.flip == "none" else args.flip, "fill": args.fill, "fill_value": args.fill_value,
             "rotation": args.rotation, "zoom": args.zoom, "translation": args.translation,
             "contrast": args.contrast, "enabled": False if args.no_augment else None}
    given = {k: v for k, v in given.items() if v is not None}
    return {**asdict(Augment()), **given} if given else None


def _runs(args) -> int:
    store = RunStore()
    jobs.pump(store)
    runs = store.list()
    for run in runs:
        m = run.metrics() or {}
        acc = f"{m['val_accuracy']:.3f}" if "val_accuracy" in m else "-"
        fold = folds.fold_label(run.config) if folds.valid_group(run.config.get(folds.FOLD_GROUP_KEY)) else None
        print(f"{run.id:40s} {run.effective_state():10s} {run.config.get('strategy', ''):20s} "
              f"{run.config.get('backbone', ''):20s} val_acc={acc}" + (f" fold={fold}" if fold else ""))
    summary = compare.fold_summary(compare.comparison_table(runs))
    if len(summary):
        print("\nrepeated splits (mean ± sample sd of the folds' accuracy):")
    for _, row in summary.iterrows():
        print(f"{row[folds.FOLD_GROUP_KEY]} {row['Strategy']} · {row['backbone']}: {folds.describe(row)}")
    return 0


def _show(args) -> int:
    run = RunStore().get(args.run_id)
    if args.json:
        print(json.dumps({"status": run.effective_status(), "progress": run.progress(),
                          "metrics": run.metrics()}, indent=2, default=str))
    else:
        print("\n".join(with_uncertainty(run_summary(run), run.metrics())))
        for line in _fold_lines(run):
            print(line)
    return 0


def _fold_lines(run) -> list[str]:
    """For a fold run: which fold of which group, and the group's mean ± spread so far."""
    group = folds.valid_group(run.config.get(folds.FOLD_GROUP_KEY))
    label = folds.fold_label(run.config)
    if not group or not label:
        return []
    members = [r for r in RunStore().list() if r.config.get(folds.FOLD_GROUP_KEY) == group]
    lines = [f"fold:      {label} of group {group} ({run.config.get('fold_scheme')}, "
             f"split seed {run.config.get('fold_seed')})"]
    for _, row in compare.fold_summary(compare.comparison_table(members)).iterrows():
        if row["strategy"] == run.config.get("strategy"):
            lines.append(f"folds:     {folds.describe(row)}")
    return lines


def _cancel(args) -> int:
    print(jobs.cancel(RunStore().get(args.run_id)))
    return 0


def _backbones(args) -> int:
    for spec in backbones.list_backbones():
        where = backbones.weights_location(spec)
        print(f"{spec.name:22s} {spec.family:6s} {spec.default_size:4d}px {spec.params / 1e6:6.1f}M "
              f"top1={spec.top1 or '-'} weights={'local: ' + str(where) if where else 'download needed'}")
    return 0


def _extract(args) -> int:
    """Extract and cache the features of every split, with a progress line; the last line gives
    the images extracted, the seconds, the images/s and the engine with its precision."""
    with settings.engine_chosen(args.engine):  # this command's choice, not the environment's
        return _extract_on_engine(args)


def _extract_on_engine(args) -> int:
    import time


    engine.requested()  # a bad name fails here, with its message

    ds = scan_folder(args.dataset)
    bb = backbones.load_backbone(args.backbone)
    images, seconds, labels = 0, 0.0, set()
    for split in ("train", "validation"):
        if not ds.paths(split):
            continue

        def progress(p, split=split):
            print(f"\r{split}: {p.done:,}/{p.total:,} images"
                  + (" (cached)" if p.cached else f", {p.images_per_s:.0f} images/s"), end="", file=sys.stderr,
                  flush=True)

        start = time.perf_counter()
        fs = extract_features(ds, args.backbone, split=split, pooling=args.pooling, loaded=bb, progress=progress)
        print(file=sys.stderr)
        if not fs.from_cache:
            images += int((fs.meta.get("speed") or {}).get("images") or 0)
            seconds += time.perf_counter() - start
        labels.add(fs.meta.get("engine", "?"))
    rate = f"{images / seconds:.0f} images/s" if seconds > 0 and images else "all from the cache"
    print(f"extracted {images:,} images in {seconds:.1f} s ({rate}) with {', '.join(sorted(labels))}")
    return 0


def _engine(args) -> int:
    print(f"engine: {engine.describe()}")
    print(f"training precision: {precision.describe()}")
    print(f"{engine.ENGINE_ENV}={engine.requested()}; CPU capabilities (OpenVINO): "
          f"{', '.join(engine.cpu_capabilities()) or 'none (OpenVINO missing)'}")
    for v in engine.verdicts():
        m = v.get("metrics", {})
        print(f"parity {'passed' if v['passed'] else 'REFUSED'}: {v['network']} {v['size']}px {v['pooling']} "
              f"on {v['engine']}: cosine mean {m.get('cosine_mean', float('nan')):.4f}"
              + (f", top-1 agreement {m['top1_agreement']:.2f}" if "top1_agreement" in m else "")
              + (f" ({v['reason']})" if v.get("reason") else ""))
    return 0


def _advise(args) -> int:
    advice = advisor.advise(scan_folder(args.dataset), backbone=args.backbone, progress=lambda text, done: print(
        f"\r{done:4.0%} {text:<70}", end="", file=sys.stderr, flush=True))
    print(file=sys.stderr)
    print(advice.table().to_string())

    import shlex

    command = shlex.join(["python", "-m", "core", "train", "--dataset", args.dataset, *advice.train_args()])
    on = f" on {advice.backbone}" if uses_backbone(advice.strategy) else ""
    where = f", block {advice.feature_layer}" if advice.feature_layer else ""
    print("\n".join(["", f"Recommended: {command}", f"  ({advice.strategy}{on}{where})", *advice.reasons]))
    return 0


def _predict(args) -> int:
    """Classify files and folders with a run; the CSV's flags are empty for a run without calibration."""
    outcome = predict.predict(inference.load_run(RunStore().get(args.run)), args.paths)
    predict.write_csv(outcome.rows, args.out)
    for name, reason in outcome.errors:
        print(f"could not read {name}: {reason}", file=sys.stderr)
    answered = len(outcome.rows) - len(outcome.errors)
    print(f"{answered} of {len(outcome.rows)} photos classified -> {args.out}")
    if not outcome.calibrated:
        print(f"run {args.run} is {trust.NOT_CALIBRATED}: probabilities are the network's own; "
              "not_sure and unlike_data are left empty", file=sys.stderr)
    elif not outcome.unlike_checked:
        print(f"run {args.run} has no feature statistics: unlike_data is left empty", file=sys.stderr)
    return 0


def _report(args) -> int:
    """One self-contained HTML report of a dataset and every run on it; the advisor only with
    ``--advise`` (it measures for minutes and its answer is not stored)."""
    from core.report import on_dataset, write_report  # lazy: loads plotly

    ds = scan_folder(args.dataset)
    runs = on_dataset(RunStore().list(), ds.root)
    advice = None
    if args.advise:
        advice = advisor.advise(ds, backbone=args.backbone, progress=lambda text, done: print(
            f"\r{done:4.0%} {text:<70}", end="", file=sys.stderr, flush=True))
        print(file=sys.stderr)
    write_report(args.out, ds, runs, advice=advice)
    print(f"report of {ds.name}: {len(runs)} run(s){', with the advice' if advice else ''} -> {args.out}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core", description="Transfer Lab from the command line")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train one strategy and write a run")
    t.add_argument("--dataset", required=True, help="folder of class subfolders (optionally train/ validation/)")
    t.add_argument("--strategy", choices=list(registry.STRATEGIES), default="feature_extraction")
    t.add_argument("--classic", action="store_true", help="the textbook recipe's settings for the strategy (VGG16 at 150 px, RMSprop 2e-5, batch 20)")
    t.add_argument("--backbone")
    t.add_argument("--weights", help="imagenet (default), random, or a weights file")
    t.add_argument("--input-size", type=int)
    t.add_argument("--pooling", choices=POOLINGS)
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--optimizer", choices=OPTIMIZERS)
    t.add_argument("--fine-tune-layers", type=int)
    t.add_argument("--fine-tune-epochs", type=int)
    t.add_argument("--feature-layer", help="feature extraction from this layer of the base (an earlier block)")
    t.add_argument("--class-weights", choices=["auto", "on", "off"],
                   help=f"auto (default): on when the largest class has {registry.IMBALANCE_RATIO:g}x the smallest")
    t.add_argument("--flip", choices=["auto", "none", "horizontal", "vertical", "horizontal_and_vertical"],
                   help="augmentation flip; auto (default): measured on the data")
    t.add_argument("--fill", choices=FILLS, help="how rotation, zoom and shift fill uncovered pixels")
    t.add_argument("--fill-value", type=float, help="the colour of a constant fill (0..255)")
    t.add_argument("--rotation", type=float, help="augmentation rotation, a fraction of a full turn")
    t.add_argument("--zoom", type=float)
    t.add_argument("--translation", type=float)
    t.add_argument("--contrast", type=float)
    t.add_argument("--no-augment", action="store_true", help="train without augmentation")
    t.add_argument("--limit-per-class", type=int, help="train on a seeded subset")
    t.add_argument("--seed", type=int)
    t.add_argument("--precision", choices=list(precision.CHOICES),
                   help="what gradient steps compute at; auto: bf16 where measured faster on a CPU with native bf16, "
                        "float16 on a GPU, float32 otherwise (default: $TRANSFER_LAB_PRECISION or auto)")
    t.add_argument("--name")
    t.add_argument("--background", action="store_true", help="queue it for a background worker")
    t.add_argument("--folds", type=_folds_arg, default=1, metavar="K",
                   help="repeat over K splits of train + validation pooled (one run each, one fold group), "
                        "reported as mean ± spread; 'auto': 5 when the validation split has under 385 photos, "
                        "else 1; default 1 (the dataset's own split)")
    t.add_argument("--fold-scheme", choices=["kfold", "repeated"], default="kfold",
                   help="kfold: stratified K-fold, each photo validated once; repeated: K stratified splits "
                        "at the validation fraction")
    t.add_argument("--fold-seed", type=int, help="the seed of the splits (default: --seed)")
    t.add_argument("--keep-fold-models", action="store_true",
                   help="each fold also writes its model (model.keras) and calibration, as a plain run does; by "
                        "default the folds keep their metrics, predictions and histories only")
    t.set_defaults(func=_train)
    sub.add_parser("runs", help="list runs").set_defaults(func=_runs)
    s = sub.add_parser("show", help="status, progress and metrics of a run")
    s.add_argument("run_id")
    s.add_argument("--json", action="store_true", help="everything as JSON, for scripts")
    s.set_defaults(func=_show)
    c = sub.add_parser("cancel", help="cancel a queued or running run")
    c.add_argument("run_id")
    c.set_defaults(func=_cancel)
    sub.add_parser("backbones", help="list backbones and where their weights are").set_defaults(func=_backbones)
    x = sub.add_parser("extract", help="extract and cache the features of every split of a dataset")
    x.add_argument("--dataset", required=True)
    x.add_argument("--backbone", default=DEFAULT_BACKBONE)
    x.add_argument("--pooling", choices=POOLINGS, default="avg")
    x.add_argument("--engine", choices=list(engine.names()), help="default: $TRANSFER_LAB_ENGINE or auto")
    x.set_defaults(func=_extract)
    sub.add_parser("engine", help="the engine and precision frozen forward passes run on, and the parity "
                   "verdicts kept here").set_defaults(func=_engine)
    a = sub.add_parser("advise", help="the 2x2 strategy advisor for a dataset")
    a.add_argument("--dataset", required=True)
    a.add_argument("--backbone", default=DEFAULT_BACKBONE)
    a.set_defaults(func=_advise)
    pr = sub.add_parser("predict", help="classify image files and folders with a run, as CSV "
                        "(file,class,probability,not_sure,unlike_data)")
    pr.add_argument("--run", required=True, help="the run id (python -m core runs)")
    pr.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    pr.add_argument("--out", required=True, help="the CSV file to write")
    pr.set_defaults(func=_predict)
    rp = sub.add_parser("report", help="one self-contained HTML file: the dataset card, every run on the dataset "
                        "with its intervals and verdicts, curves, confusion matrices and a model card")
    rp.add_argument("--dataset", required=True, help="the dataset folder the runs were trained on")
    rp.add_argument("--out", required=True, help="the HTML file to write")
    rp.add_argument("--advise", action="store_true", help="also measure the advisor's advice (minutes)")
    rp.add_argument("--backbone", default="efficientnet_lite0", help="the backbone the advisor starts from")
    rp.set_defaults(func=_report)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except TransferLabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
