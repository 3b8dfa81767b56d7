"""Engine: TensorFlow against OpenVINO (``core.nets.engine``) on real photos, in one run.

1. forward pass on decoded real photos, interleaved batch by batch: TensorFlow, OpenVINO at the
   precision ``auto`` picks on this CPU, OpenVINO f32; images/s of each and the ratio to TF
2. agreement: cosine of the pooled features of each engine against TF's, and a
   logistic-regression probe (train split -> validation split) on each engine's features,
   plus TF's probe scored on the engine's features
3. extraction from JPEG files to cached features (``extract_features``), engine ``auto`` over
   ``tensorflow`` (fresh cache each), and our pipeline over the engine's bare forward pass timed
   just before and after each run
4. the decoder, one thread: ``load_rgb`` (Pillow, reduced-size JPEG draft) against a full decode
   and, when installed, libjpeg-turbo's n/8 DCT scaling (``simplejpeg``)
5. the live classifier, one uploaded photo end to end, p50 on the engine over TensorFlow
6. one training epoch where the frozen part runs on the engine: frozen base + augmentation,
   fine-tuning with augmentation (the prefix on the engine each epoch) and without it (the
   prefix's activations cached once at the cut), ``auto`` over ``tensorflow``
"""

from __future__ import annotations

import gc
import time

import numpy as np

from core.nets.engine import AUTO, TENSORFLOW as _REFERENCE

from .common import Context, GroupResult, Stopwatch, at_least, attempt, engine_env, fmt, fmt_seconds, log, rate, \
    ratio, warm_file_cache

BACKBONE = "efficientnet_lite0"
REFERENCE, REFERENCE_LABEL = _REFERENCE.engine, _REFERENCE.label  # "tensorflow", "tensorflow f32"
BATCH = 32
EXTRACT_TARGET = 2.0  # issue 18: extraction, auto over tensorflow
EFFICIENCY_TARGET = 0.85  # our pipeline over the engine's bare forward pass


def _decode_all(paths, size):
    from core.data.images import load_rgb

    return np.stack([load_rgb(p, (size, size)) for p in paths]).astype(np.float32)


def interleaved_forward(ctx: Context, result: GroupResult, ds) -> dict:
    """Items 1 and 2."""
    from core.nets import backbones, engine

    bb = backbones.load_backbone(BACKBONE)
    size = bb.input_size
    train, val = ds.paths("train"), ds.paths("validation")
    log(f"engine: decoding {len(train) + len(val)} photos at {size} px once")
    X = _decode_all(train + val, size)
    y = np.concatenate([ds.labels("train"), ds.labels("validation")])
    auto = engine.choose("auto")
    contenders = {REFERENCE_LABEL: None}
    network = f"{BACKBONE}|{bb.weights_id}"
    forced = [engine.Choice(b.name, "f32", "forced for the comparison") for b in engine.backends()
              if not b.reference and "f32" in b.precisions]
    for choice in dict.fromkeys([auto, *forced]):
        if not choice.reference:
            fwd = engine.FrozenForward(bb.forward("avg"), size, network, "avg", choice=choice,
                                       ir_key=f"{network}|{size}|avg|{bb.spec.preprocess}")
            contenders[choice.label] = fwd
    tf_fn = bb.forward("avg")

    def run(name, x):
        fwd = contenders[name]
        return np.asarray(tf_fn(x), np.float32) if fwd is None else fwd(x)

    for name in contenders:  # warm: trace, convert, compile, and the guard's probe on real photos
        run(name, X[:BATCH])
        run(name, X[:BATCH])
    seconds = {n: 0.0 for n in contenders}
    cpu = {n: 0.0 for n in contenders}
    feats = {n: [] for n in contenders}
    order = list(contenders)
    log(f"engine: {len(X)} photos, batch {BATCH}, interleaved through {', '.join(order)}")
    for b, i in enumerate(range(0, len(X), BATCH)):
        x = X[i:i + BATCH]
        for name in order[b % len(order):] + order[:b % len(order)]:  # rotate who goes first
            with Stopwatch() as t:
                out = run(name, x)
            seconds[name] += t.seconds
            cpu[name] += t.cpu
            feats[name].append(out)
    F = {n: np.concatenate(v) for n, v in feats.items()}
    ips = {n: rate(len(X), s) for n, s in seconds.items()}
    fig = {"backbone": BACKBONE, "size": size, "images": len(X), "batch": BATCH, "auto": auto.label,
           "auto_reason": auto.reason, "images_per_s": ips, "seconds": seconds, "cpu_seconds": cpu,
           "ratio_to_tf": {n: ratio(v, ips[REFERENCE_LABEL]) for n, v in ips.items()},
           "cpu_ratio_to_tf": {n: ratio(cpu[REFERENCE_LABEL], v) for n, v in cpu.items()}}
    for name, v in ips.items():
        result.add(f"1 forward {name}", f"{fmt(v)} img/s on {len(X)} decoded real photos, interleaved; "
                   f"CPU-time ratio {fmt(fig['cpu_ratio_to_tf'][name])}", fig["ratio_to_tf"][name],
                   "ratio to TF")

    # 2: agreement and probes
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n_train = len(train)
    ref = F[REFERENCE_LABEL]
    probes, agreement = {}, {}
    tf_probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000))
    tf_probe.fit(ref[:n_train], y[:n_train])
    for name, f in F.items():
        probe = tf_probe if name == REFERENCE_LABEL else make_pipeline(
            StandardScaler(), LogisticRegression(C=1.0, max_iter=3000)).fit(f[:n_train], y[:n_train])
        probes[name] = float(probe.score(f[n_train:], y[n_train:]))
        cos = engine._cosines(ref, f)
        agreement[name] = {"cosine_mean": float(cos.mean()), "cosine_worst": float(cos.min()),
                           "tf_probe_accuracy": float(tf_probe.score(f[n_train:], y[n_train:])),
                           "verdict": (contenders[name].verdict or {}).get("metrics") if contenders[name] else None}
    fig.update(probe_accuracy=probes, agreement=agreement, train_images=n_train, val_images=len(X) - n_train)
    for name in F:
        a = agreement[name]
        result.add(f"2 probe accuracy {name}", f"logistic regression, {n_train} train -> {len(X) - n_train} "
                   f"validation photos; cosine to TF mean {a['cosine_mean']:.5f}, worst {a['cosine_worst']:.4f}; "
                   f"TF's probe on these features {a['tf_probe_accuracy']:.4f}", probes[name])
    result.figures["forward"] = fig
    del X, F, feats, contenders
    gc.collect()
    return fig


def extraction(ctx: Context, result: GroupResult, ds) -> None:
    """Item 3: from JPEG files to cached features, each engine on a fresh cache entry."""
    from core.features.cache import clear_cache, extract_features
    from core.nets import backbones

    n = len(ds.paths("train"))
    timings, labels, bare_s = {}, {}, {}
    try:
        for request in (REFERENCE, AUTO, REFERENCE, AUTO):  # twice each, alternating
            with engine_env(request):
                clear_cache()
                bb = backbones.load_backbone(BACKBONE)
                fwd = bb.frozen_forward("avg")
                fwd(np.random.default_rng(0).uniform(0, 255, (2, bb.input_size, bb.input_size, 3)))  # warm
                fwd(np.random.default_rng(0).uniform(0, 255, (BATCH, bb.input_size, bb.input_size, 3)))
                log(f"engine: extraction of {n} JPEG files with {request} ({fwd.label}), bare passes before and after")
                bare_s.setdefault(request, []).append(_bare_seconds(fwd, bb.input_size, n))
                with Stopwatch() as t:
                    fs = extract_features(ds, BACKBONE, split="train", loaded=bb, batch_size=BATCH)
                bare_s[request].append(_bare_seconds(fwd, bb.input_size, n))
                assert not fs.from_cache
                timings.setdefault(request, []).append((t.seconds, t.cpu))
                labels[request] = fs.meta["engine"]
                del bb, fwd, fs
                gc.collect()
    finally:
        clear_cache()
    wall = {k: sum(s for s, _ in v) for k, v in timings.items()}
    cpu = {k: sum(c for _, c in v) for k, v in timings.items()}
    ips = {k: rate(n * len(timings[k]), wall[k]) for k in wall}
    speedup = ratio(ips["auto"], ips[REFERENCE])
    bare_ips = {k: rate(n * len(v), sum(v)) for k, v in bare_s.items()}
    bare_auto = bare_ips["auto"]
    eff = ratio(ips["auto"], bare_auto)
    result.figures["extraction"] = {"images": n, "runs": {k: len(v) for k, v in timings.items()}, "engines": labels,
                                    "images_per_s": ips, "cpu_seconds": cpu, "speedup": speedup,
                                    "cpu_time_speedup": ratio(cpu[REFERENCE], cpu["auto"]),
                                    "bare_images_per_s": bare_ips, "efficiency": eff,
                                    "efficiency_tensorflow": ratio(ips[REFERENCE], bare_ips[REFERENCE])}
    result.add("3 extraction auto / tensorflow", f"{labels['auto']} {fmt(ips['auto'])} img/s / {labels[REFERENCE]} "
               f"{fmt(ips[REFERENCE])} img/s from {n} JPEG files (2 runs each, alternating); CPU-time ratio "
               f"{fmt(ratio(cpu[REFERENCE], cpu['auto']))}", speedup, f">= {EXTRACT_TARGET}x",
               at_least(speedup, EXTRACT_TARGET))
    result.add("3 pipeline efficiency (engine)", f"ours {fmt(ips['auto'])} img/s / bare {labels['auto']} forward "
               f"{fmt(bare_auto)} img/s (in-memory batches just before and after each run); with tensorflow "
               f"{fmt(ratio(ips[REFERENCE], bare_ips[REFERENCE]))}", eff, f">= {EFFICIENCY_TARGET}",
               at_least(eff, EFFICIENCY_TARGET))


def _bare_seconds(fwd, size: int, images: int) -> float:
    """Seconds to push ``images`` in-memory images through ``fwd`` in batches of ``BATCH``."""
    x = np.random.default_rng(0).uniform(0, 255, (BATCH, size, size, 3)).astype(np.float32)
    rest = images % BATCH
    with Stopwatch() as t:
        for _ in range(images // BATCH):
            fwd(x)
        if rest:
            fwd(x[:rest])
    return t.seconds


def _decoders():
    """``name -> fn(path, size)``: the decoder (``load_rgb``) and the alternatives measured against it."""
    from PIL import Image

    from core.data import images

    def full(p, s):  # no reduced-scale draft
        with Image.open(p) as img:
            return np.asarray(images.resize(images._to_rgb(img), (s, s)))

    decoders = {"ours": lambda p, s: images.load_rgb(p, (s, s)), "Pillow full decode": full}
    try:
        import simplejpeg
    except ImportError:  # requirements-dev.txt; the app does not use it
        return decoders

    def turbo(p, s):  # libjpeg-turbo at the smallest n/8 DCT scale keeping both sides >= s
        with open(p, "rb") as f:
            pixels = simplejpeg.decode_jpeg(f.read(), "RGB", min_height=s, min_width=s)
        return np.asarray(images.resize(Image.fromarray(pixels), (s, s)))

    decoders["simplejpeg n/8 scale"] = turbo
    return decoders


def decoder(ctx: Context, result: GroupResult, ds, size: int = 224, count: int = 200, rounds: int = 3) -> None:
    """Item 4: the decode paths on the same files, one thread, alternating path by path for
    ``rounds``; the least CPU time of each (the machine's load only adds to it). Pixels are
    compared with ours."""
    paths = ds.paths("train")[:count]
    decoders = _decoders()
    figs = {}
    for s in sorted({size, 150}):
        cpu = {name: float("inf") for name in decoders}
        pixels = {}
        for _ in range(rounds):
            for name, fn in decoders.items():
                with Stopwatch() as t:
                    pixels[name] = [fn(p, s) for p in paths]
                cpu[name] = min(cpu[name], t.cpu)
        ips = {name: rate(len(paths), c) for name, c in cpu.items()}
        diff = {name: np.array([np.abs(o.astype(np.int16) - r.astype(np.int16)).mean()
                                for o, r in zip(pixels[name], pixels["ours"])]) for name in decoders}
        figs[s] = {"images": len(paths), "images_per_cpu_s": ips,
                   "mean_abs_diff_to_ours": {n: float(d.mean()) for n, d in diff.items()},
                   "worst_image_mean_abs_diff_to_ours": {n: float(d.max()) for n, d in diff.items()}}
        for name in decoders:
            pix = "" if name == "ours" else (f"; pixels to ours mean |diff| {diff[name].mean():.2f} "
                                             f"(worst photo {diff[name].max():.2f})")
            result.add(f"4 decoder {s}px {name}", f"{fmt(ips[name])} img/s per CPU second, one thread, "
                       f"{len(paths)} photos, best of {rounds}{pix}", ratio(ips[name], ips["ours"]), "ratio to ours")
    result.figures["decoder"] = figs


def pipeline_bound(result: GroupResult) -> None:
    """Item 3's ceiling on this machine: decoding and the forward pass share the same cores, so
    extraction can reach at most ``1 / (1 + bare_ips / (cores * decode_ips))`` of the bare pass
    (every core busy all the time, nothing else running)."""
    ext, dec = result.figures.get("extraction"), result.figures.get("decoder")
    if not ext or not dec:
        return
    from core.settings import usable_cores

    cores = usable_cores()
    size = max(dec)
    bare, decode = ext["bare_images_per_s"]["auto"], dec[size]["images_per_cpu_s"]["ours"]
    bound = 1 / (1 + bare / (cores * decode))
    ext["bound"] = {"cores": cores, "decode_images_per_s_one_thread": decode, "bound": bound,
                    "share_of_bound": ratio(ext["efficiency"], bound)}
    result.add("3 pipeline bound (CPU)", f"decoding {fmt(decode)} img/s a thread and the bare pass {fmt(bare)} img/s "
               f"share {cores} cores: at most {fmt(bound)} of the bare pass; ours reaches "
               f"{fmt(ratio(ext['efficiency'], bound))} of that", bound)


def classifier(ctx: Context, result: GroupResult, ds, photos: int) -> None:
    """Item 5: the live classifier (``core.serve.inference``), one uploaded photo end to end
    (decode, resize, forward, top-5), TensorFlow and the engine alternating photo by photo."""
    from pathlib import Path

    from core.nets import backbones, engine
    from core.serve import inference

    spec = backbones.get_spec(BACKBONE)

    model, size = backbones.load_classifier(spec)

    classes = backbones.imagenet_classes(spec)
    predictors = {}
    for request in (REFERENCE, AUTO):
        p = inference.Predictor(model, size, classes, name=BACKBONE, kind="imagenet", source=BACKBONE)
        p._forward = engine.FrozenForward(
            engine.tensorflow_batch_fn(model), size, p._network_id(), "probabilities", kind="probabilities",
            choice=engine.choose(request), ir_key=f"{p._network_id()}|{size}")
        predictors[p._forward.label] = p
    uploads = [Path(x).read_bytes() for x in ds.paths("validation")[:photos]]
    for p in predictors.values():  # warm: trace, convert, the guard's probe on a real photo
        p.warm_up()
        for data in uploads[:3]:
            inference.classify(p, data)
    samples = {name: [] for name in predictors}
    same = 0
    for i, data in enumerate(uploads):
        tops = []
        for name in (list(predictors) if i % 2 == 0 else list(predictors)[::-1]):
            with Stopwatch() as t:
                r = inference.classify(predictors[name], data)
            samples[name].append(t.seconds)
            tops.append(r.index)
        same += int(len(set(tops)) == 1)
    from .common import percentile

    p50 = {name: percentile(v, 50) for name, v in samples.items()}
    names = list(predictors)
    r = ratio(p50[names[1]], p50[names[0]])
    result.figures["classifier"] = {"photos": len(uploads), "p50_s": p50,
                                    "p95_s": {n: percentile(v, 95) for n, v in samples.items()},
                                    "top1_same": same, "ratio_p50": r}
    result.add("5 classifier p50 engine / TF", f"{names[1]} {p50[names[1]] * 1e3:.1f} ms / {names[0]} "
               f"{p50[names[0]] * 1e3:.1f} ms per uploaded photo ({len(uploads)} photos, alternating); same top-1 "
               f"on {same}/{len(uploads)}", r, "<= 0.6", None if r is None else r <= 0.6)


# (item, strategy, config overrides, the phase whose epochs are timed, target speed-up)
EPOCH_CASES = (
    ("frozen base + augmentation", "frozen_augment", dict(epochs=2), "train", 1.8),
    ("fine-tuning with augmentation", "fine_tune", dict(epochs=1, fine_tune_epochs=2), "fine_tune", 1.8),
    ("fine-tuning without augmentation (cut cache)", "fine_tune",
     dict(epochs=1, fine_tune_epochs=2, augment=dict(enabled=False)), "fine_tune", 4.0),
)


def _epoch_seconds(history, phase: str) -> float | None:
    """Seconds of the phase's last epoch (training and validation): the first one also traces."""
    rows = history[history["phase"] == phase] if len(history) else history
    return float(rows["seconds"].iloc[-1]) if len(rows) else None


def epochs(ctx: Context, result: GroupResult, per_class: int) -> None:
    """Item 6: one epoch of the strategies whose frozen part runs on the engine, ``auto`` against
    ``tensorflow`` on the same seeded subset, alternating engine by engine for each case."""
    from core.train import registry
    from core.train.fit import fit

    figs = {}
    for item, strategy, overrides, phase, target in EPOCH_CASES:
        seconds, extra, acc = {}, {}, {}
        for request in (REFERENCE, AUTO):
            cfg = registry.make_config(strategy, dataset=str(ctx.dataset), backbone=BACKBONE, seed=ctx.seed,
                                       limit_per_class=per_class, early_stopping=0, **overrides)
            log(f"engine: {item}, {request}, {2 * per_class} train images")
            with engine_env(request):
                res = fit(cfg)
            seconds[request] = _epoch_seconds(res.history, phase)
            extra[request] = {k: v for k, v in res.extra.items() if k in ("frozen_engine", "cut_layer",
                                                                          "cut_cache_seconds")}
            acc[request] = res.metrics.get("val_accuracy")
            del res
            gc.collect()
        speedup = ratio(seconds[REFERENCE], seconds["auto"])
        figs[item] = {"strategy": strategy, "overrides": overrides, "train_images_per_class": per_class,
                      "epoch_seconds": seconds, "speedup": speedup, "extra": extra, "val_accuracy": acc}
        cache = extra["auto"].get("cut_cache_seconds")
        result.add(f"6 epoch: {item}", f"tensorflow {fmt_seconds(seconds[REFERENCE])} / auto "
                   f"({extra['auto'].get('frozen_engine', REFERENCE)}) {fmt_seconds(seconds['auto'])} per epoch"
                   + (f"; the cut cache filled once in {fmt_seconds(cache)}" if cache else "")
                   + f"; val accuracy {fmt(acc[REFERENCE])} / {fmt(acc['auto'])}",
                   speedup, f">= {target}x", at_least(speedup, target))
    result.figures["epochs"] = figs


def run(ctx: Context) -> GroupResult:
    from core.nets import engine

    result = GroupResult("engine", ctx.quick)
    ds = ctx.sample(100 if ctx.quick else None)
    warm_file_cache(ds.paths("train") + ds.paths("validation"))
    t0 = time.perf_counter()
    if ctx.wants("1", "2"):
        attempt(result, "1 forward", interleaved_forward, ctx, result, ds)
    if ctx.wants("3"):
        attempt(result, "3 extraction", extraction, ctx, result, ds)
    if ctx.wants("3", "4"):
        attempt(result, "4 decoder", decoder, ctx, result, ds)
        attempt(result, "3 pipeline bound", pipeline_bound, result)
    if ctx.wants("5"):
        attempt(result, "5 classifier", classifier, ctx, result, ds, 20 if ctx.quick else 60)
    if ctx.wants("6"):
        attempt(result, "6 epochs", epochs, ctx, result, 50 if ctx.quick else 300)
    auto = engine.choose("auto")  # named whichever items ran
    result.notes.append(f"{BACKBONE}, avg pooling, batch {BATCH}; engine auto here: {auto.label} ({auto.reason}); "
                        f"{time.perf_counter() - t0:.0f} s in all")
    if ctx.quick:
        result.notes.append("--quick: 100 photos per class and split; the full run uses all 3,000")
    return result
