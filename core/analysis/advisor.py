"""The strategy advisor: it measures candidates on a sample and recommends from the figures.

On a seeded sample of the training split it measures, cross-validated:

- the pixel baseline (logistic regression on downscaled raw pixels, ``core.train.pixels``):
  the floor that transfer must beat;
- a linear probe on the backbone's top ImageNet features (``core.analysis.separability``);
- a linear probe on an earlier block of the backbone (``core.nets.blocks``): more
  generic features, the classic advice for data unlike ImageNet;
- a linear probe on the top features of every other backbone whose ImageNet weights are on
  this machine: a backbone that separates the sample clearly better is recommended instead;
- a short from-scratch trial (the small CNN at its defaults, time-boxed) on the sample, judged
  on a sample of the validation split, when the features leave room above them: a network
  that already matches frozen features on a sample gains more from the rest of the data than
  a head on those features does (its learning curve is steeper).

When ImageNet features do not clearly beat the raw pixels, or the from-scratch trial already
matches them, the data is far from ImageNet for this backbone and a network trained on the
data itself is the pick; otherwise a head on the best features measured (fine-tuning when the
data is large). The 2x2 table (size x similarity) stays as the textbook explanation. Features
come from the feature cache, so asking again is cheap.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from core.analysis.separability import default_entries, probe_cv_correct, separability
from core.data.dataset import Dataset, subset
from core.errors import Cancelled
from core.nets.backbones import DEFAULT_BACKBONE, get_spec
from core import verdicts
from core.analysis import label_budget
from core.features.cache import extract_features
from core.features.dataset import cached_extract
from core.nets import backbones
from core.nets.blocks import earlier_block, truncate
from core.nets.loaded import loaded_backbone
from core.train import pixels, registry
from core.train.flips import decide, feature_view
from core.train.loop import Context, NullReporter, Recording
from core.verdicts import interval_text

SMALL_PER_CLASS = 1000  # under this many training images a class, a dataset counts as small
SIMILAR_SKILL = 0.8  # probe skill over chance ((acc - chance) / (1 - chance)) that counts as similar
SAMPLE_PER_CLASS = 60
SCRATCH_MIN_PER_CLASS = 50  # below this many training images a class, the pixel baseline stands in for a CNN
TRIAL_EPOCHS = 12  # the from-scratch trial: a short run of the strategy's own schedule on the sample ...
TRIAL_SECONDS = 45.0  # ... stopped at this time (best epoch kept), so the advice stays within two minutes

CELLS = {
    ("small", "similar"): ("feature_extraction",
                           "Train a small head on cached ImageNet features: the features already "
                           "separate the classes, and too few images would overfit a fine-tuned base."),
    ("large", "similar"): ("fine_tune",
                           "Extract features, then fine-tune the top few layers at a low learning rate: "
                           "enough data to adapt the last blocks without forgetting."),
    ("small", "different"): ("frozen_augment",
                             "Keep the base frozen and train with augmentation; features transfer less "
                             "well, and there is too little data to retrain deep layers safely."),
    ("large", "different"): ("fine_tune",
                             "Fine-tune many layers (or train from scratch): the data is plentiful and far "
                             "from ImageNet, so the upper layers must relearn."),
}


@dataclass
class Advice:
    size: str  # "small" | "large"
    similarity: str  # "similar" | "different"
    strategy: str
    unfreeze_layers: int
    reasons: list[str] = field(default_factory=list)
    figures: dict = field(default_factory=dict)
    textbook: str = ""  # the 2x2 table's strategy for this cell (the explanation, not the pick)
    feature_layer: str = ""  # the recommended feature depth: "" for the top, else a block's layer
    candidates: list[dict] = field(default_factory=list)  # what was measured, best first
    confidence: str = ""  # how sure: the best measured candidate's lead over the next, against the noise
    backbone: str = ""  # the backbone to train on: the one asked about unless another separates clearly better
    label_budget: dict = field(default_factory=dict)  # how many more labels pay (label_budget.summary, or "error")

    def to_dict(self) -> dict:
        return asdict(self)

    def train_args(self) -> list[str]:
        """The ``python -m core train`` options that start the advised run: every setting the advice
        sets (strategy, backbone, feature layer, layers to unfreeze, and, for a strategy that augments,
        the measured flip, fill and transformations)."""
        args = ["--strategy", self.strategy]
        if registry.uses_backbone(self.strategy) and self.backbone:
            args += ["--backbone", self.backbone]
        if self.feature_layer:
            args += ["--feature-layer", self.feature_layer]
        if self.unfreeze_layers:
            args += ["--fine-tune-layers", str(self.unfreeze_layers)]
        aug = self.figures.get("augment")
        if aug and registry.get(self.strategy).augments and not aug.get("enabled", True):
            args += ["--no-augment"]  # measured: no transformation expected to pay
        elif aug and registry.get(self.strategy).augments:
            args += ["--flip", aug["flip"] or "none", "--fill", aug["fill"]]
            if aug["fill"] == "constant":
                args += ["--fill-value", f"{aug['fill_value']:g}"]
            for name in ("rotation", "zoom", "translation", "contrast"):
                if name in aug:
                    args += [f"--{name}", f"{aug[name]:g}"]
        return args

    def table(self):
        """The 2x2 table as a DataFrame (rows size, columns similarity) with this cell marked."""
        import pandas as pd


        rows = {}
        for size in ("small", "large"):
            rows[size] = {
                sim: registry.label(CELLS[(size, sim)][0]) + (" ◀ this dataset" if (size, sim) == (self.size, self.similarity) else "")
                for sim in ("similar", "different")
            }
        return pd.DataFrame(rows).T.rename_axis("dataset size")


def _one_thread():
    """BLAS on one thread for the probes: on a busy 2-core machine spinning BLAS threads made
    the same cross-validation several times slower (measured 2.8 s against 0.5 s)."""
    import sklearn.linear_model  # noqa: F401  (loaded first: a limit covers only loaded libraries)
    import sklearn.metrics  # noqa: F401
    import sklearn.neighbors  # noqa: F401
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def _noise(p: float, n: int) -> float:
    """1.96 standard errors of an accuracy ``p`` measured on ``n`` images."""
    return 1.96 * float(np.sqrt(max(p * (1 - p), 0.25 / max(n, 1)) / max(n, 1)))


def _correct(measured: dict, key: str):
    """The image-by-image record (cross-validated, on the sampled images) of a measured figure:
    ``top``, ``block``, ``pixels`` or another backbone's name; None where it was not kept."""
    found = measured.get(f"{key}_correct") if key in ("top", "block", "pixels") else \
        (measured.get("others_correct") or {}).get(key)
    return None if found is None else np.asarray(found, bool)


def _accuracy(measured: dict, key: str) -> float:
    return measured[key] if key in ("top", "block", "pixels", "scratch") else measured["others"][key]


def ahead(measured: dict, a: str, b: str, n: int) -> bool:
    """Whether ``a`` beats ``b`` on the sample beyond chance. Two figures scored on the same sampled
    images get McNemar's exact test (5%, ``core.verdicts``): it reads only the images one gets
    right and the other wrong, so it resolves the leads a sample can resolve and no more. A figure
    without its image-by-image record (the scratch trial scores other images) falls back to the
    lead against 1.96 standard errors of ``b``."""
    first, second = _correct(measured, a), _correct(measured, b)
    if first is not None and second is not None and first.shape == second.shape and len(first):
        test = verdicts.paired(first, second)
        return test.lead > 0 and test.p < verdicts.ALPHA
    return _accuracy(measured, a) > _accuracy(measured, b) + _noise(_accuracy(measured, b), n)


def pick(measured: dict, n: int, size: str, per_class: int) -> tuple[str, str, list[str]]:
    """``(strategy, feature_layer, reasons)`` from the measured accuracies; one figure counts as
    better than another only when it is ``ahead`` on the sample (a paired test where both were
    scored image by image).

    ``measured``: ``top`` (probe on top features), optional ``block`` and ``block_layer`` (probe
    on an earlier block), ``others`` ({backbone: probe on its top features}, with their display
    ``names``; a clearly better one carries the pick), ``pixels`` (pixel baseline), ``scratch``
    (the from-scratch trial) and ``chance``; ``n`` sampled images. Fine-tuning only when the
    data is large and the frozen features leave room."""
    top, block, pixel = measured["top"], measured.get("block"), measured.get("pixels")
    use_block = block is not None and ahead(measured, "block", "top", n)
    transfer, key = (block, "block") if use_block else (top, "top")
    where = f"the earlier block {measured.get('block_layer')}" if use_block else "the top features"
    other, other_acc = better_backbone(measured, n)
    other_name = (measured.get("names") or {}).get(other, other)
    if other:
        transfer, key, where = other_acc, other, f"the top features of {other_name}"
    reasons = []
    if pixel is not None and not ahead(measured, key, "pixels", n):
        if per_class >= SCRATCH_MIN_PER_CLASS:
            reasons.append(f"ImageNet features ({where}: {transfer:.1%}) do not beat the raw pixels "
                           f"({pixel:.1%}) by more than the {n} sampled images can resolve (a paired test on the same images): "
                           "this data is far from ImageNet, so train a network on the data itself; the pixel "
                           "baseline is the floor it must beat.")
            return "scratch", "", reasons
        reasons.append(f"The raw pixels ({pixel:.1%}) do as well as ImageNet features ({transfer:.1%}), and "
                       f"with under {SCRATCH_MIN_PER_CLASS} images a class a network from scratch has too little "
                       "to learn from: the pixel baseline is the pick.")
        return "pixel_baseline", "", reasons
    trial = measured.get("scratch")
    if trial is not None and trial >= transfer - _noise(transfer, n):
        reasons.append(f"A network trained from scratch on the sample ({trial:.1%} on sampled validation images, "
                       f"a short time-boxed run) already matches ImageNet features ({where}: {transfer:.1%}) "
                       f"within the ±{_noise(transfer, n):.1%} a sample of {n} can resolve; trained on all the data "
                       "it gains more than a head on frozen features, so train a network on the data itself.")
        return "scratch", "", reasons
    beat = f" and beat the raw pixels ({pixel:.1%})" if pixel is not None else ""
    chance = measured.get("chance", 0.0)
    skill = (transfer - chance) / (1 - chance) if chance < 1 else 0.0
    if size == "large" and skill < SIMILAR_SKILL:
        strategy, how = "fine_tune", ("fine-tune its top layers: the data is plentiful and the frozen features "
                                      f"leave room (skill {skill:.2f} over chance)")
    elif size == "large":
        strategy, how = "feature_extraction", (f"train a head on the cached features: they already separate the "
                                               f"classes (skill {skill:.2f} over chance), so fine-tuning has "
                                               "little to add for its cost")
    else:
        strategy, how = "feature_extraction", ("train a head on the cached features: too few images to retrain "
                                               "the base safely")
    reasons.append(f"ImageNet features transfer: {where} separate the sample best ({transfer:.1%}){beat}; {how}.")
    if other:
        reasons.append(f"{other_name} ({other_acc:.1%}) separates the sample better than the backbone asked "
                       f"about ({max(top, block or 0.0):.1%}) by more than the sample's noise: train on {other_name}.")
        return strategy, "", reasons
    if use_block:
        reasons.append(f"The earlier block {measured['block_layer']} ({block:.1%}) beats the top features "
                       f"({top:.1%}): its more generic features fit this data better.")
    return strategy, measured.get("block_layer", "") if use_block else "", reasons


def better_backbone(measured: dict, n: int) -> tuple[str, float]:
    """``(backbone, accuracy)`` of another backbone whose top features are ``ahead`` of the asked
    one's best (top or block) on the ``n`` sampled images; ``("", 0.0)`` when none is."""
    own = "block" if measured.get("block") is not None and measured["block"] > measured["top"] else "top"
    others = measured.get("others") or {}
    if not others:
        return "", 0.0
    name, acc = max(others.items(), key=lambda kv: kv[1])
    return (name, acc) if ahead(measured, name, own, n) else ("", 0.0)


class _Steps:
    """The advisor's progress, ``progress(text, fraction of the whole)``, over its measurements, and
    the cancel check between (and inside) them: ``should_stop()`` true raises ``Cancelled``."""

    def __init__(self, count: int, progress=None, should_stop=None):
        self.count, self.done, self.progress, self.should_stop = count, 0, progress, should_stop

    def check(self) -> None:
        if self.should_stop and self.should_stop():
            raise Cancelled("The advisor was cancelled; nothing it measured so far is kept as advice.")

    def begin(self, text: str):
        """Start the next step; returns the extraction progress callback for it."""
        self.check()
        self.text, self.done = text, self.done + 1
        self.report_within(0.0)
        return lambda p: self.report_within(p.done / max(p.total, 1))

    def skip(self) -> None:
        """A planned step that turned out to be unneeded: the count shrinks (and the bar moves on)."""
        self.count -= 1
        self.report_within(1.0)

    def report_within(self, within: float) -> None:
        if self.progress:
            self.progress(f"Step {self.done} of {self.count}: {self.text}",
                          min((self.done - 1 + within) / self.count, 1.0))


def _probe(X, y, seed: int) -> tuple[float, np.ndarray]:
    """Cross-validated probe accuracy and, per sampled image, whether the probe got it right."""
    with _one_thread():
        correct = probe_cv_correct(np.asarray(X), y, seed=seed)[0]
    return float(correct.mean()), correct


def _measure_block(sample: Dataset, backbone: str, weights, seed: int, steps: _Steps) -> dict:
    """Probe accuracy on an earlier block's pooled features of the sample (cached like the top's)."""
    import time


    report = steps.begin("features of an earlier block")
    start = time.perf_counter()
    bb = loaded_backbone(backbone, weights)
    layer = earlier_block(bb)
    if not layer:
        return {}
    feats = extract_features(sample, backbone, split="train", weights=weights, pooling="avg",
                             loaded=truncate(bb, layer), progress=report, should_stop=steps.should_stop)
    X, y = feats.usable()
    accuracy, correct = _probe(X, y, seed)
    return {"block": accuracy, "block_correct": correct, "block_layer": layer,
            "block_seconds": time.perf_counter() - start}


def _measure_others(sample: Dataset, others: list[str], seed: int, steps: _Steps) -> dict:
    """Probe accuracy on the top features of each other backbone; one that cannot run is left out
    with its reason."""
    import time


    out: dict = {"others": {}, "names": {}, "other_seconds": {}, "other_errors": {}, "others_correct": {}}
    for name in others:
        spec = get_spec(name)
        display = spec.display_name
        report = steps.begin(f"features of the sample with {display}")
        start = time.perf_counter()
        try:
            feats = cached_extract(sample, spec, split="train", progress=report, should_stop=steps.should_stop)
        except Cancelled:
            raise
        except Exception as exc:  # weights that fail to load, a backbone too big for memory
            out["other_errors"][name] = str(exc)
            continue
        X, y = feats.usable()
        (out["others"][name], out["others_correct"][name]), out["names"][name] = _probe(X, y, seed), display
        out["other_seconds"][name] = time.perf_counter() - start
    return out


def _measure_pixels(sample: Dataset, seed: int, steps: _Steps, backbone=None) -> dict:
    """Cross-validated pixel baseline on the sample; ``{}`` when too few images decode. The flips and
    transformations are judged on ``backbone``'s features (``core.train.flips``)."""
    import time


    steps.begin("the pixel baseline and the flips")
    start = time.perf_counter()
    pix, valid = pixels.decode(sample.paths("train"))
    y = sample.labels("train")[valid]
    counts = np.bincount(y) if len(y) else np.zeros(0, int)
    if len(counts[counts > 0]) < 2 or counts[counts > 0].min() < 2:
        return {}
    correct = _pixel_correct(pix[valid], y, seed)
    seconds = time.perf_counter() - start

    try:
        seen = feature_view(sample, backbone, seed)
    except Cancelled:
        raise
    except Exception:  # noqa: BLE001  (a backbone that cannot run: the pixel probe judges the flips)
        seen = None
    augment = decide(pix[valid], y, seed=seed, seen=seen)  # the same sample: which flips, transforms and fill fit
    return {"pixels": float(correct.mean()), "pixels_correct": correct, "pixel_seconds": seconds,
            "augment": {"enabled": augment.augment.enabled, "flip": augment.augment.flip, "fill": augment.augment.fill,
                        "fill_value": augment.augment.fill_value, "reasons": augment.reasons,
                        **{t: getattr(augment.augment, t) for t in ("rotation", "zoom", "translation", "contrast")},
                        "evidence": augment.to_dict()}}


def _pixel_correct(pix: np.ndarray, y: np.ndarray, seed: int, folds: int = 3) -> np.ndarray:
    """Per sampled image, whether the pixel baseline (its own selection inside each fold, as
    ``core.train.pixels.sample_accuracy``) trained on the other folds gets it right."""
    from sklearn.model_selection import StratifiedKFold


    counts = np.bincount(y)
    folds = int(max(2, min(folds, counts[counts > 0].min())))
    correct = np.zeros(len(y), bool)
    for a, b in StratifiedKFold(folds, shuffle=True, random_state=seed).split(pix, y):
        correct[b] = pixels.fit(pix[a], y[a], seed).probabilities(pix[b]).argmax(1) == y[b]
    return correct


def _measure_scratch(ds: Dataset, per_class: int, seed: int, augment: dict | None, steps: _Steps) -> dict:
    """The from-scratch CNN at its defaults for ``TRIAL_EPOCHS`` (stopped after ``TRIAL_SECONDS``)
    on the sample's training images, judged on as many validation images a class: its best
    epoch's validation accuracy."""
    import time


    steps.begin("a short from-scratch trial")
    trial = subset(ds, per_class, seed)
    if not trial.split("validation"):
        return {}
    cfg = registry.make_config("scratch", "modern", dataset=ds.root, epochs=TRIAL_EPOCHS, seed=seed)
    if augment:  # decided on the sample already: the trial does not measure the flips again
        a = cfg.augment
        a.flip, a.fill, a.fill_value = augment["flip"], augment["fill"], augment["fill_value"]
        a.enabled = augment.get("enabled", True)
        for t in ("rotation", "zoom", "translation", "contrast"):
            setattr(a, t, augment.get(t, getattr(a, t)))
    start = time.perf_counter()

    class TimeBox(NullReporter):
        def on_epoch(self, row):
            super().on_epoch(row)
            steps.report_within(len(self.rows) / TRIAL_EPOCHS)

        def should_stop(self):
            return time.perf_counter() - start > TRIAL_SECONDS or bool(steps.should_stop and steps.should_stop())

    box = TimeBox()
    registry.get("scratch").fit(Context(cfg, trial, Recording(box), None, None))
    steps.check()
    accuracies = [r["val_accuracy"] for r in box.rows if np.isfinite(r.get("val_accuracy", np.nan))]
    if not accuracies:
        return {}
    return {"scratch": float(max(accuracies)), "scratch_seconds": time.perf_counter() - start,
            "scratch_epochs": len(box.rows), "scratch_val_images": len(trial.split("validation"))}


def _scratch_may_win(measured: dict, n: int, size: str, per_class: int) -> bool:
    """Whether the from-scratch trial could change the pick: enough images a class for a CNN, the
    pixels have not already sent it to the data, and the best features leave room above them."""
    if per_class < SCRATCH_MIN_PER_CLASS or pick(measured, n, size, per_class)[0] in ("scratch", "pixel_baseline"):
        return False
    best = max(measured["top"], measured.get("block") or 0.0, *(measured.get("others") or {}).values())
    return best < 1.0 - _noise(best, n)


def other_backbones(backbone: str) -> list[str]:
    """The backbones, besides ``backbone``, whose ImageNet weights are on this machine."""
    return [name for name, weights in default_entries() if weights == "imagenet" and name != backbone]


def advise(ds: Dataset, backbone: str = DEFAULT_BACKBONE, weights="imagenet",
           sample_per_class: int = SAMPLE_PER_CLASS, seed: int = 0, progress=None, should_stop=None,
           compare: list[str] | None = None) -> Advice:
    """Recommend a strategy for ``ds`` from what was measured on a sample, with the figures and
    the reasons in plain words.

    ``progress(text, fraction)`` follows the measurements; ``should_stop()`` true cancels
    (``Cancelled``); ``compare``: the other backbones to probe (default: every other one with
    ImageNet weights on this machine, when ``weights`` is ImageNet)."""
    import time


    counts = ds.counts()["train"]
    per_class = min(counts.values()) if counts else 0
    size = "small" if per_class < SMALL_PER_CLASS else "large"
    others = (other_backbones(backbone) if weights == "imagenet" else []) if compare is None else list(compare)
    steps = _Steps(4 + len(others), progress, should_stop)
    spec = backbones.get_spec(backbone)

    sample = subset(ds, sample_per_class, seed, splits=("train",))
    start = time.perf_counter()
    report = steps.begin(f"features of the sample with {spec.display_name}")
    feats = cached_extract(sample, spec, split="train", weights=weights, progress=report,
                           should_stop=should_stop)
    X, y = feats.usable()
    with _one_thread():
        sep = separability(np.asarray(X), y, seed=seed, keep_correct=True)
    top_correct = sep.pop("probe_correct")
    sep.pop("knn_correct")
    top_seconds = time.perf_counter() - start
    budget = _label_budget(X, y, ds, counts, seed, should_stop)
    chance = sep["chance"]
    skill = (sep["probe_cv_accuracy"] - chance) / (1 - chance) if chance < 1 else 0.0
    similarity = "similar" if skill >= SIMILAR_SKILL else "different"
    textbook, why = CELLS[(size, similarity)]

    measured = {"top": sep["probe_cv_accuracy"], "top_correct": top_correct, "top_seconds": top_seconds,
                "chance": chance}
    try:
        measured.update(_measure_block(sample, backbone, weights, seed, steps))
    except Cancelled:
        raise
    except Exception as exc:  # a backbone that cannot be cut still gets advice from the rest
        measured["block_error"] = str(exc)
    measured.update(_measure_others(sample, others, seed, steps))
    measured.update(_measure_pixels(sample, seed, steps, loaded_backbone(spec, weights)))
    n = int(len(y))
    if _scratch_may_win(measured, n, size, per_class):
        measured.update(_measure_scratch(ds, sample_per_class, seed, measured.get("augment"), steps))
    else:
        steps.skip()
    steps.check()
    strategy, feature_layer, picked_why = pick(measured, n, size, per_class)
    chosen = (better_backbone(measured, n)[0] or backbone) if registry.uses_backbone(strategy) else backbone

    depth = len(loaded_backbone(chosen, weights).base.layers) if strategy == "fine_tune" else 0
    share = 0.1 if similarity == "similar" else 0.4
    unfreeze = int(round(depth * share)) if strategy == "fine_tune" else 0
    candidates = [{"candidate": f"linear probe on {spec.display_name} top features", "strategy": "linear_probe",
                   "feature_layer": "", "backbone": backbone, "accuracy": measured["top"], "seconds": top_seconds,
                   "_correct": measured["top_correct"]}]
    if "block" in measured:
        candidates.append({"candidate": f"linear probe on {spec.display_name} block {measured['block_layer']}",
                           "strategy": "feature_extraction", "feature_layer": measured["block_layer"],
                           "backbone": backbone, "accuracy": measured["block"], "seconds": measured["block_seconds"],
                           "_correct": measured.get("block_correct")})
    if "pixels" in measured:
        candidates.append({"candidate": "pixel baseline (logistic regression on raw pixels)",
                           "strategy": "pixel_baseline", "feature_layer": "", "backbone": "",
                           "accuracy": measured["pixels"], "_correct": measured.get("pixels_correct"),
                           "seconds": measured["pixel_seconds"]})
    if "scratch" in measured:
        candidates.append({"candidate": f"from scratch, a short trial ({measured['scratch_epochs']} epochs)",
                           "strategy": "scratch", "feature_layer": "", "backbone": "", "accuracy": measured["scratch"],
                           "seconds": measured["scratch_seconds"],  # a run at the defaults has more epochs
                           "epoch_scale": registry.make_config("scratch", "modern").epochs / measured["scratch_epochs"]})
    for name, acc in measured["others"].items():
        candidates.append({"candidate": f"linear probe on {measured['names'][name]} top features",
                           "strategy": "linear_probe", "feature_layer": "", "backbone": name, "accuracy": acc,
                           "seconds": measured["other_seconds"][name],
                           "_correct": measured["others_correct"].get(name)})
    total = int(sum(counts.values()))
    for c in candidates:  # decoding and extraction grow with the images; the fits on them are small
        c["noise"] = _noise(c["accuracy"], n)
        c["predicted_seconds"] = c["seconds"] * total / max(n, 1) * c.pop("epoch_scale", 1.0)
    candidates.sort(key=lambda c: -c["accuracy"])
    _candidate_verdicts(candidates)
    confidence = _confidence(candidates, n)
    quick = _quickest_within_noise(candidates)

    measured_text = "; ".join(f"{c['candidate']} {interval_text(c['accuracy'], c.get('ci_low'), c.get('ci_high'))}"
                              f"{' ★' if c.get('best') else ''} ({c['seconds']:.0f} s)" for c in candidates)
    reasons = [
        f"Size: the smallest class has {per_class:,} training images "
        f"({'under' if size == 'small' else 'at least'} {SMALL_PER_CLASS:,} a class), so the dataset counts as {size}.",
        f"Similarity: on {len(y)} sampled images, a linear probe on {spec.display_name} ImageNet features "
        f"separates the classes with {sep['probe_cv_accuracy']:.1%} cross-validated accuracy "
        f"({sep['probe_folds']}-fold; 5-NN leave-one-out: {sep['knn_loo_accuracy']:.1%}; chance: {chance:.1%}), "
        f"a skill of {skill:.2f} over chance, "
        f"so the data looks {'similar to' if similarity == 'similar' else 'different from'} ImageNet "
        f"(threshold {SIMILAR_SKILL}).",
        f"Measured on the sample (cross-validated; 95% Wilson intervals; ★ best by the paired verdicts): "
        f"{measured_text}.",
        *picked_why,
        f"Pick: {registry.label(strategy)}" + (f" on block {feature_layer}" if feature_layer else "") +
        (f" with {backbones.get_spec(chosen).display_name}" if chosen != backbone else "") +
        (". The textbook table agrees." if textbook == strategy else
         f". The textbook table would say {registry.label(textbook)} ({why[0].lower() + why[1:]}); the "
         "measurement overrides it."),
    ]
    if registry.imbalance_ratio(counts) >= registry.IMBALANCE_RATIO:
        reasons.insert(1, registry.imbalance_note(counts))
    if unfreeze:
        reasons.append(f"Unfreeze about the top {unfreeze} of {depth} layers ({share:.0%}), BatchNorm kept frozen.")
    if "augment" in measured:
        reasons.append("Augmentation (measured; runs decide the same way unless you choose): "
                       + " ".join(measured["augment"]["reasons"]))
    figures = {"train_images": total, "smallest_class": int(per_class), "sample_size": n, "chance": chance,
               "imbalance_ratio": registry.imbalance_ratio(counts),
               "skill": skill, "backbone": backbone, **sep,
               **{k: v for k, v in measured.items() if k not in ("top", "chance") and not k.endswith("_correct")}}
    reasons.append("More labels: " + budget.get("text", budget.get("error", "")))
    reasons.append(confidence)
    if quick is not None and quick is not candidates[0]:
        reasons.append(f"Best accuracy per minute: {quick['candidate']} ({quick['accuracy']:.1%}, about "
                       f"{quick['predicted_seconds'] / 60:.1f} min on all {total:,} training images) is within the "
                       f"noise of the best and the quickest.")
    return Advice(size, similarity, strategy, unfreeze, reasons, figures, textbook, feature_layer, candidates,
                  confidence, chosen, budget)


def _label_budget(X, y, ds: Dataset, counts: dict, seed: int, should_stop) -> dict:
    """How many more labels pay, from the sample's features the advisor already has (no extraction): a
    learning curve cross-fitted on the sample (only the sizes the law is fitted to, 2 seeds: 42 probes on at
    most 40 photos a class, about a second for two classes), extrapolated to the dataset's photos a class.
    A sample too small for a curve gets the reason instead."""
    try:
        with _one_thread():
            return label_budget.summary(label_budget.budget(
                np.asarray(X), y, names=list(ds.classes), now_per_class=sum(counts.values()) / max(len(counts), 1),
                fractions=label_budget.SAMPLE_FRACTIONS, seeds=2, seed=seed, should_stop=should_stop))
    except label_budget.LabelBudgetError as exc:
        return {"error": str(exc)}


def _candidate_verdicts(candidates: list[dict]) -> None:
    """Each candidate's 95% Wilson interval and its verdict against the best: those measured on the same
    sampled images (the probes, the pixel baseline) get McNemar's exact test, Holm-adjusted over the
    comparisons; the from-scratch trial, judged on other images, gets its interval only. ``best``: a
    resolved leader, or the quickest (predicted time on all images) of those within noise of it."""
    lengths = {len(c["_correct"]) for c in candidates if c.get("_correct") is not None}
    entries = [verdicts.Entry(c["candidate"], c.get("_correct") if len(lengths) == 1 else None,
                              float(np.mean(c["_correct"])) if c.get("_correct") is not None else c["accuracy"],
                              len(c["_correct"]) if c.get("_correct") is not None else int(c.get("images", 0)),
                              c["predicted_seconds"], key=str(i)) for i, c in enumerate(candidates)]
    for v in verdicts.compare_with_leader(entries, "sampled images"):
        c = candidates[int(v.key)]
        c.update(ci_low=v.low, ci_high=v.high, resolved=v.resolved, best=v.best, verdict=v.text,
                 p_adjusted=v.p_adjusted)
    for c in candidates:
        c.pop("_correct", None)


def _quickest_within_noise(candidates: list[dict]) -> dict | None:
    """The quickest candidate (predicted seconds on the whole training split) whose accuracy the
    sample cannot tell from the best's."""
    if not candidates:
        return None
    best = candidates[0]
    close = [c for c in candidates if best["accuracy"] - c["accuracy"] <= best["noise"]]
    return min(close, key=lambda c: c["predicted_seconds"])


def _confidence(candidates: list[dict], n: int) -> str:
    """How sure the measurement is: the best candidate's lead over the runner-up against the
    noise of the paired difference on ``n`` images (about sqrt(2) times one accuracy's)."""
    if len(candidates) < 2:
        return f"Sure only of what was measured: one candidate on {n} images."
    best, second = candidates[0], candidates[1]
    if second.get("verdict") and second.get("resolved") is not None:  # a paired test on the same images
        unresolved = [c["candidate"] for c in candidates[1:] if c.get("resolved") is False]
        several = " (McNemar exact, Holm-adjusted over the candidates compared with it)" if len(candidates) > 2 else \
            " (McNemar exact)"
        if not unresolved:
            return (f"Confidence: clear. The best measured candidate ({best['candidate']}) leads every other by more "
                    f"than its {n} sampled images can leave to chance{several}. " + second["verdict"])
        return (f"Confidence: a close call. The best measured candidate ({best['candidate']}) is not resolved from "
                f"{', '.join(unresolved)} on {n} sampled images{several}; both are reasonable, and a run of each "
                "settles it. " + second["verdict"])
    lead = best["accuracy"] - second["accuracy"]
    noise = float(np.sqrt(2.0)) * max(best["noise"], second["noise"])
    if lead > noise:
        return (f"Confidence: clear. The best measured candidate ({best['candidate']}) leads the next "
                f"({second['candidate']}) by {lead:.1%}, more than the ±{noise:.1%} a sample of {n} images can resolve.")
    return (f"Confidence: a close call. The best two measured candidates are {lead:.1%} apart, within the "
            f"±{noise:.1%} a sample of {n} images can resolve; both are reasonable, and a run of each settles it.")
