"""How many more labels pay: a learning curve on cached features, a law fitted to it, and its honest check.

The curve: the separability probe (``core.features.probe``, on L2-normalised features) trained on
stratified fractions of the training split, spaced by a factor sqrt(2) so the small end, where the curve
bends, has most of the points; ``SEEDS`` seeded subsets each, scored on the same validation photos (or,
without a validation split, cross-fitted over the training photos). Each point carries its 95% Wilson
interval on the validation photos and the spread over the seeds.

The fit works on the error rate, where learning curves are power laws (Hestness et al. 2017), in log space
(an error halving counts the same at 20% as at 2%), each point weighted by the inverse variance of its
log-error (the seeds' spread plus the validation photos' binomial variance). Only the curve's upper part is
fitted, its last factor of ``REGION`` in photos: below it lies the "small-data region", where the error falls
more slowly than the power law that follows (measured here: fitting every point under-predicted the full
data by 1 to 7 points on gratings, the curve steepening as it leaves the small-data region). Three laws,
from the learning-curve and sample-size literature (Figueroa et al. 2012):

- ``power``: error = a n^-b, a straight line in log-log (no floor: more photos keep paying);
- ``power+floor``: error = c + a n^-b, with the floor c between 0 and the smallest error measured;
- ``logit``: odds of an error = a n^-b (bounded by chance at the small end, a power law at the large one).

The law is picked by forward validation, the way it will be used: each is fitted on the points up to half
the largest size and judged on how well it predicts those above (an extrapolation over a factor of two,
as from half the data to all of it); the pick is then fitted on every point of the region, the simplest
law winning a tie. The extrapolation's uncertainty is a bootstrap (validation photos and seeds resampled,
the law refitted): a 95% band on the expected probe accuracy and on "how many more photos"; it does not
hold the luck of the particular photos a dataset has, which at a few dozen photos a class moves the
full-data probe by several points on its own.

``honest_check`` fits on at most half the training split and compares its prediction of the full-data
probe with the probe measured on the full data: the extrapolation is judged, not assumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from core.features.neighbours import l2_normalise
from core.features.probe import linear_probe
from core.verdicts import wilson
from core.errors import Cancelled, TransferLabError
from core.features.dataset import dataset_features

REGION = 8.0  # the fit uses the curve's last factor of 8 in photos a class (its power-law region)
SEEDS = 5  # seeded subsets per point: the spread between them is part of each point's weight
STEPS = 11  # fractions 1, 1/sqrt(2), 1/2, ... 1/32: most points where the curve bends
MIN_PER_CLASS = 20  # training photos in the smallest class below which no curve is drawn
SMALLEST = 3  # photos a class at the curve's smallest point, at least
CROSS_FOLDS = 3  # without a validation split, the curve is cross-fitted over this many folds
MIN_VALIDATION = 20  # fewer validation photos than this: cross-fit on the training photos instead
BOOTSTRAP = 200  # bootstrap draws for the bands
FLAT_GAIN = 0.01  # the curve "flattens" where doubling the photos gains less than this (1 point)
CUT = 0.25  # the sentence's target: a quarter fewer errors than today
EXTEND = 8.0  # the chart extends the fitted curve to this many times today's photos a class
LAWS = ("power", "power+floor", "logit")
FLOOR_MAX = 0.5  # the floor of the power+floor law: at most half the smallest error measured (the curve is
# measured to still fall, so a floor right under its last point would say "flat" from the noise of one point)
FRACTIONS = tuple(float(2 ** (-k / 2)) for k in range(STEPS))[::-1]
SAMPLE_FRACTIONS = FRACTIONS[-7:]  # the fitted region only (1 down to 1/8): for a quick curve on a sample


class LabelBudgetError(TransferLabError):
    """A learning curve that cannot be measured on this data (too few photos a class)."""


# ---------------------------------------------------------------- the measured curve

@dataclass
class Curve:
    """The measured learning curve: ``points`` (one row per size, smallest first) and, per point and
    seed, which evaluation photos the probe got right (what the bootstrap resamples)."""

    points: pd.DataFrame
    correct: np.ndarray  # bool (points, seeds, evaluation photos)
    evaluation: str  # "validation" or "cross-fitted"
    chance: float
    classes: int

    @property
    def n_eval(self) -> int:
        return int(self.correct.shape[2])


def _subset(y: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A stratified subset: ``fraction`` of every class (at least ``SMALLEST`` photos of each)."""
    keep = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        keep.append(rng.permutation(idx)[:max(SMALLEST, int(round(len(idx) * fraction)))])
    return np.concatenate(keep)


def _probe_correct(X, y, Xv, yv) -> np.ndarray:
    return linear_probe().fit(X, y).predict(Xv) == yv


def check_enough(y, names: list[str] | None = None) -> None:
    """Refuse with what to do when the smallest class is too small for a curve to mean anything."""
    y = np.asarray(y, np.int64)
    present = np.unique(y)
    if len(present) < 2:
        raise LabelBudgetError("A learning curve needs training photos of at least two classes.")
    counts = {int(c): int((y == c).sum()) for c in present}
    small = min(counts, key=counts.get)
    if counts[small] < MIN_PER_CLASS:
        name = names[small] if names and small < len(names) else f"class {small}"
        raise LabelBudgetError(
            f"Too few photos a class for a learning curve: '{name}' has {counts[small]} training photos, and the "
            f"curve needs at least {MIN_PER_CLASS} in every class (it trains on fractions of them down to a few "
            "a class). Label more photos first; the curve then says how many more would pay.")


def learning_curve(X, y, Xv=None, yv=None, *, fractions=FRACTIONS, seeds: int = SEEDS, seed: int = 0,
                   names: list[str] | None = None, should_stop: Callable[[], bool] | None = None) -> Curve:
    """The probe's validation accuracy at each fraction of the training photos, ``seeds`` seeded subsets each.

    Without validation photos (``Xv`` None, or fewer than ``MIN_VALIDATION``) the curve is cross-fitted:
    the training photos are cut into ``CROSS_FOLDS`` stratified folds, each scored by probes trained on
    fractions of the others, so every training photo is scored once per point and seed."""
    from sklearn.model_selection import StratifiedKFold

    X = l2_normalise(np.asarray(X, np.float32))
    y = np.asarray(y, np.int64)
    check_enough(y, names)
    if Xv is not None and len(yv) >= MIN_VALIDATION:
        folds = [(np.arange(len(y)), None)]
        Xv, yv = l2_normalise(np.asarray(Xv, np.float32)), np.asarray(yv, np.int64)
        evaluation = "validation"
    else:
        split = StratifiedKFold(CROSS_FOLDS, shuffle=True, random_state=seed).split(X, y)
        folds = [(tr, te) for tr, te in split]
        Xv, yv = X, y
        evaluation = "cross-fitted"
    smallest = min(int(np.bincount(y[folds[0][0]])[c]) for c in np.unique(y))
    fractions, seen = sorted({float(f) for f in fractions if 0 < f <= 1}, reverse=True), set()
    for f in list(fractions):  # one point per distinct size (the small end of a small class repeats)
        size = max(SMALLEST, int(round(smallest * f)))
        fractions.remove(f) if size in seen else seen.add(size)
    fractions = fractions[::-1]
    correct = np.zeros((len(fractions), seeds, len(yv)), bool)
    sizes = np.zeros(len(fractions))
    for i, fraction in enumerate(fractions):
        for s in range(seeds):
            for train, held in folds:
                if should_stop is not None and should_stop():
                    raise Cancelled("The learning curve was cancelled.")
                rng = np.random.default_rng([seed, i, s])
                keep = train[_subset(y[train], fraction, rng)]
                if held is None:
                    correct[i, s] = _probe_correct(X[keep], y[keep], Xv, yv)
                else:
                    correct[i, s, held] = _probe_correct(X[keep], y[keep], X[held], y[held])
                if s == 0 and (held is None or train is folds[0][0]):
                    sizes[i] = len(keep) / len(np.unique(y))
    acc = correct.mean(axis=2)  # (points, seeds)
    rows = []
    for i, fraction in enumerate(fractions):
        mean = float(acc[i].mean())
        low, high = wilson(int(round(mean * len(yv))), len(yv))
        rows.append({"fraction": fraction, "per_class": float(sizes[i]), "accuracy": mean, "ci_low": low,
                     "ci_high": high, "seed_sd": float(acc[i].std(ddof=1)) if seeds > 1 else 0.0,
                     "seed_min": float(acc[i].min()), "seed_max": float(acc[i].max()), "seeds": seeds})
    points = pd.DataFrame(rows)
    counts = np.bincount(yv)
    return Curve(points, correct, evaluation, float(counts.max() / counts.sum()), int((np.bincount(y) > 0).sum()))


# ---------------------------------------------------------------- the laws

def _odds(e):
    return e / (1 - e)


def _law_error(law: str, params, n):
    """The error rate a law predicts at ``n`` photos a class."""
    n = np.asarray(n, float)
    if law == "power":
        a, b = params
        return a * n ** -b
    if law == "power+floor":
        a, b, c = params
        return c + a * n ** -b
    a, b = params  # logit: odds of an error = a n^-b
    o = a * n ** -b
    return o / (1 + o)


def _line(x, target, w):
    """Weighted least squares of ``target`` on ``-x``: ``(log a, b)``."""
    A = np.c_[np.ones_like(x), -x] * w[:, None]
    (loga, b), *_ = np.linalg.lstsq(A, target * w, rcond=None)
    return float(loga), float(b)


def _fit_law(law: str, n, err, var, ceiling: float):
    """Weighted least squares of log-error on log-n for one law; None when it cannot be fitted (the
    error does not fall with the photos). ``var``: each point's variance of the error rate (its weight is
    err^2 / var, the inverse variance of the log-error); ``ceiling``: the chance error."""
    n, err, var = (np.asarray(v, float) for v in (n, err, var))
    w = np.sqrt(err ** 2 / var)
    x = np.log(n)
    if law == "power":
        loga, b = _line(x, np.log(err), w)
        return (float(np.exp(loga)), b) if np.isfinite(b) and b > 0 else None
    if law == "logit":  # d log(odds) = d log(e) / (1 - e): the same weights, in the odds' scale
        loga, b = _line(x, np.log(_odds(np.minimum(err, ceiling * 0.999))), w * (1 - err))
        return (float(np.exp(loga)), b) if np.isfinite(b) and b > 0 else None
    # power+floor: the floor c profiled over a grid below the smallest error measured; for each c,
    # log(e - c) is a straight line in log n (weights carried over: d log(e - c) = d log(e) * e / (e - c))
    best, params = np.inf, None
    for c in float(err.min()) * np.r_[0.0, np.geomspace(1e-3, FLOOR_MAX, 30)]:
        gap = err - c
        loga, b = _line(x, np.log(gap), w * gap / err)
        if not np.isfinite(b) or b <= 0:
            continue
        b = min(b, 3.0)
        miss = float(np.sum((w * (np.log(c + np.exp(loga) * n ** -b) - np.log(err))) ** 2))
        if miss < best:
            best, params = miss, (float(np.exp(loga)), b, float(c))
    return params


def _point_stats(correct: np.ndarray, n_eval: int):
    """Per point: the mean error over the seeds and its variance (seed spread over the seeds plus the
    validation photos' binomial variance), the error kept off 0 by half a photo."""
    acc = correct.mean(axis=2)
    err = np.clip(1 - acc.mean(axis=1), 0.5 / n_eval, 1 - 0.5 / n_eval)
    seeds = acc.shape[1]
    seed_var = acc.var(axis=1, ddof=1) / seeds if seeds > 1 else 0.0
    var = seed_var + err * (1 - err) / n_eval
    return err, np.maximum(var, (0.5 / n_eval) ** 2)


@dataclass
class Fit:
    """The law picked for a curve, its parameters, and bootstrap draws of them (for the bands)."""

    law: str
    params: tuple
    fitted_on: list[float]  # photos a class of the points it was fitted on
    scores: dict = field(default_factory=dict)  # law -> forward-validation error (accuracy points)
    draws: list = field(default_factory=list)  # bootstrap parameter draws of the same law
    ceiling: float = 1.0

    def accuracy(self, n) -> np.ndarray:
        return 1 - np.minimum(_law_error(self.law, self.params, n), self.ceiling)

    def band(self, n, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """The bootstrap's ``level`` band of the predicted accuracy at ``n``."""
        n = np.atleast_1d(np.asarray(n, float))
        if not self.draws:
            a = self.accuracy(n)
            return a, a
        runs = np.array([1 - np.minimum(_law_error(self.law, p, n), self.ceiling) for p in self.draws])
        tail = (1 - level) / 2 * 100
        return np.percentile(runs, tail, axis=0), np.percentile(runs, 100 - tail, axis=0)

    @property
    def floor(self) -> float:
        """The accuracy the law levels off at (1.0: no floor, more photos keep paying)."""
        return 1 - self.params[2] if self.law == "power+floor" else 1.0


def _select(n, err, var, ceiling: float) -> tuple[str, dict]:
    """Forward validation: each law fitted on the points up to half the largest size predicts those
    above; the smallest weighted mean absolute miss (in accuracy) wins, the simpler law (listed
    first) on a tie within a tenth of a point."""
    cut = n <= n.max() / 2 * 1.0001
    if cut.sum() < 3 or (~cut).sum() < 1:
        return "power", {}
    weight = 1 / var[~cut]
    scores = {}
    for law in LAWS:
        p = _fit_law(law, n[cut], err[cut], var[cut], ceiling)
        if p is None:
            continue
        miss = np.abs(np.minimum(_law_error(law, p, n[~cut]), ceiling) - err[~cut])
        scores[law] = float(np.sum(weight * miss) / np.sum(weight))
    if not scores:
        return "power", scores
    best = min(scores.values())
    return next(law for law in LAWS if law in scores and scores[law] <= best + 0.001), scores


def fit_curve(curve: Curve, upto: float | None = None, draws: int = BOOTSTRAP, seed: int = 0) -> Fit:
    """Pick a law by forward validation on the points up to ``upto`` photos a class (None: all of them),
    within the last factor of ``REGION`` below it, fit it on those points, and bootstrap it (validation
    photos and seeds resampled) for the bands."""
    n_all = curve.points["per_class"].to_numpy(float)
    top = min(upto, n_all.max()) if upto is not None else n_all.max()
    use = (n_all <= top * 1.0001) & (n_all >= top / REGION * 0.9999)
    correct = curve.correct[use]
    n = n_all[use]
    if len(n) < 3:
        raise LabelBudgetError("A learning curve needs at least three sizes to fit a law to.")
    ceiling = 1 - curve.chance if curve.classes > 1 else 1.0
    ceiling = max(ceiling, 1 - 1 / max(curve.classes, 2))
    err, var = _point_stats(correct, curve.n_eval)
    law, scores = _select(n, err, var, ceiling)
    params = _fit_law(law, n, err, var, ceiling)
    if params is None:
        law, params = "power", _fit_law("power", n, err, var, ceiling)
    if params is None:  # the error does not fall with more photos: a flat line at today's error
        law, params = "power+floor", (1e-9, 1.0, float(err[-1]))
    rng = np.random.default_rng(seed)
    samples = []
    points, seeds, photos = correct.shape
    for _ in range(draws):
        pick = correct[:, :, rng.integers(0, photos, photos)]
        pick = pick[np.arange(points)[:, None], rng.integers(0, seeds, (points, seeds))]
        e, v = _point_stats(pick, photos)
        p = _fit_law(law, n, e, v, ceiling)
        if p is not None:
            samples.append(p)
    return Fit(law, tuple(params), n.tolist(), scores, samples, ceiling)


# ---------------------------------------------------------------- what the fit says

_GRID = np.geomspace(1, 1e7, 4000)


def _grid(fit: Fit) -> np.ndarray:
    """Photos a class from where the law was fitted (below it the law says nothing) to 10 million."""
    return _GRID[_GRID >= fit.fitted_on[0] * 0.999]


def photos_for(fit: Fit, target: float, params=None) -> float | None:
    """Photos a class the fitted law needs to reach ``target`` accuracy (None: not within 10 million)."""
    p = fit.params if params is None else params
    grid = _grid(fit)
    acc = 1 - np.minimum(_law_error(fit.law, p, grid), fit.ceiling)
    hit = np.flatnonzero(acc >= target)
    return float(grid[hit[0]]) if len(hit) else None


def flattens_at(fit: Fit) -> float | None:
    """Photos a class past which doubling them gains under ``FLAT_GAIN`` (None: not within 10 million)."""
    grid = _grid(fit)
    gain = fit.accuracy(2 * grid) - fit.accuracy(grid)
    hit = np.flatnonzero(gain < FLAT_GAIN)
    return float(grid[hit[0]]) if len(hit) else None


def _cut_target(fit: Fit, now_n: float, params=None) -> float:
    """The accuracy with ``CUT`` fewer errors than the law (``params``: one bootstrap draw's) gives today."""
    p = fit.params if params is None else params
    return float(1 - (1 - CUT) * min(_law_error(fit.law, p, now_n), fit.ceiling))


def _needed_band(fit: Fit, now_n: float) -> tuple[float, float] | None:
    """95% band over the bootstrap draws of the extra photos a class that cut the errors by ``CUT``
    (each draw from its own today, so the band holds the law's uncertainty, not a mismatch with the
    measured point; inf: not within 10 million)."""
    if not fit.draws:
        return None
    extra = [max(0.0, (photos_for(fit, _cut_target(fit, now_n, p), p) or np.inf) - now_n) for p in fit.draws]
    low, high = np.percentile(np.minimum(extra, 1e12), [2.5, 97.5])
    return float(low), float(high) if high < 1e11 else float("inf")


def _round(n: float) -> int:
    """Photos to two significant figures: a fitted count is no more precise than that."""
    if n < 10:
        return int(np.ceil(n))
    digits = int(np.floor(np.log10(n))) - 1
    return int(round(n, -digits))


def budget(X, y, Xv=None, yv=None, *, names: list[str] | None = None, now_per_class: float | None = None,
           fractions=FRACTIONS, seeds: int = SEEDS, seed: int = 0, should_stop=None) -> dict:
    """The curve, its fit and the sentence.

    ``now_per_class``: the photos a class the dataset has (default: the training photos given; the
    advisor passes the whole dataset's, having measured on a sample). Returns ``curve`` (Curve),
    ``fit`` (Fit), ``now`` (photos a class), ``predicted_now`` (the fit's accuracy there, with ``band_now``),
    ``target``, ``extra`` and ``extra_band`` (more photos a class to reach it), ``flat`` (photos a class
    past which doubling gains under a point), ``text``, and ``chart`` (the extended curve as a frame)."""
    curve = learning_curve(X, y, Xv, yv, fractions=fractions, seeds=seeds, seed=seed, names=names,
                           should_stop=should_stop)
    fit = fit_curve(curve, seed=seed)
    measured_n = float(curve.points["per_class"].iloc[-1])
    measured = float(curve.points["accuracy"].iloc[-1])
    now = float(now_per_class) if now_per_class else measured_n
    if now > measured_n * 1.01:  # measured on a sample: today's accuracy is the fit's, at the full size
        today = float(fit.accuracy(now))
        band_now = tuple(float(v[0]) for v in fit.band(now))
    else:
        today, band_now = measured, (float(curve.points["ci_low"].iloc[-1]), float(curve.points["ci_high"].iloc[-1]))
    target = _cut_target(fit, now)
    needed = photos_for(fit, target)
    extra = None if needed is None else max(0.0, needed - now)
    extra_band = _needed_band(fit, now)
    flat = flattens_at(fit)
    grid = np.geomspace(fit.fitted_on[0], now * EXTEND, 80)  # the law holds from its region on, not below
    low, high = fit.band(grid)
    chart = pd.DataFrame({"per_class": grid, "accuracy": fit.accuracy(grid), "band_low": low, "band_high": high})
    out = {"curve": curve, "fit": fit, "now": now, "today": today, "band_now": band_now, "target": target,
           "extra": extra, "extra_band": extra_band, "flat": flat, "chart": chart, "measured_on": measured_n}
    out["text"] = sentence(out)
    return out


def sentence(b: dict) -> str:
    """The fit in plain words: how many more photos a class cut the errors by a quarter (from the fitted
    curve's today, so the target and the photos come from one curve), and where it flattens."""
    fit, now, today, target = b["fit"], b["now"], b["today"], b["target"]
    how = (f"{'fitted' if b['now'] > b['measured_on'] * 1.01 else 'measured'} {today:.1%} at {_round(now):,} photos a class")
    flat = b["flat"]
    if today >= 0.999:
        return f"The probe is already right on every photo ({how}): more photos of this kind cannot show a gain."
    if flat is not None and flat <= now:
        gain = float(fit.accuracy(2 * now) - fit.accuracy(now))
        return (f"The curve has flattened ({how}): doubling the photos is expected to gain {gain * 100:.1f} points, "
                f"so more photos of this kind are unlikely to pay; better labels, a better backbone or "
                f"fine-tuning are the levers now.")
    if b["extra"] is None:
        text = (f"Today: {how}. The fitted curve does not reach {target:.1%} (a quarter fewer errors) within any "
                "practical number of photos.")
    else:
        band = b["extra_band"]
        said = "" if band is None else (
            f" (95% band {_round(band[0]):,} to {_round(band[1]):,})" if np.isfinite(band[1]) else
            f" (95% band from {_round(band[0]):,} to more than the curve can reach)")
        text = (f"About {_round(b['extra']):,} more photos a class{said} would cut the errors by a quarter, to about "
                f"{target:.1%} (today: {how}).")
    if flat is not None:
        text += (f" The curve flattens past about {_round(flat):,} photos a class, where doubling the photos gains "
                 f"under {FLAT_GAIN * 100:.0f} point")
        text += f" (it levels off near {fit.floor:.1%})." if fit.law == "power+floor" else "."
    else:
        text += " It is still rising steeply: every doubling of the photos gains a point or more."
    return text


def summary(b: dict) -> dict:
    """The budget as plain numbers and lists (what the advisor keeps in its figures and a JSON file can hold)."""
    fit: Fit = b["fit"]
    return {"text": b["text"], "law": fit.law, "params": list(fit.params), "scores": fit.scores,
            "now_per_class": b["now"], "today": b["today"], "band_now": list(b["band_now"]),
            "target": b["target"], "extra": b["extra"],
            "extra_band": list(b["extra_band"]) if b["extra_band"] else None, "flat": b["flat"],
            "evaluation": b["curve"].evaluation, "measured_on": b["measured_on"], "fitted_on": fit.fitted_on,
            "points": b["curve"].points.to_dict("list"), "chart": b["chart"].to_dict("list")}


def dataset_budget(ds, backbone: str, weights="imagenet", progress=None, should_stop=None) -> dict:
    """The budget of a scanned dataset on ``backbone``'s pooled features from the feature cache (extracted
    once, shared with separability and the analyses): train split for the curve, validation split to score
    it (cross-fitted on the train split when validation has under ``MIN_VALIDATION`` photos). Returns ``summary``."""
    y_train = ds.labels("train") if ds.split("train") else []
    check_enough(np.asarray(y_train, np.int64), list(ds.classes))  # refuse before any extraction
    feats = dataset_features(ds, backbone, weights, progress, should_stop)
    train = np.array([s == "train" for s in feats.splits])
    Xv, yv = (feats.X[~train], feats.y[~train]) if (~train).sum() >= MIN_VALIDATION else (None, None)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # small probes: BLAS threads only contend on a busy CPU
        return summary(budget(feats.X[train], feats.y[train], Xv, yv, names=list(ds.classes),
                              should_stop=should_stop))


def honest_check(X, y, Xv=None, yv=None, max_fraction: float = 0.5, seeds: int = SEEDS, seed: int = 0) -> dict:
    """Fit on the fractions up to ``max_fraction`` of the training split only; predict the full-data probe
    accuracy and compare it with the one measured (the mean of the seeded full-data probes)."""
    curve = learning_curve(X, y, Xv, yv, seeds=seeds, seed=seed)
    pts = curve.points
    part = pts[pts["fraction"] <= max_fraction + 1e-9]
    fit = fit_curve(curve, upto=float(part["per_class"].max()), seed=seed)
    full = pts.iloc[-1]
    predicted = float(fit.accuracy(full["per_class"]))
    low, high = fit.band(full["per_class"])
    return {"per_class": float(full["per_class"]), "predicted": predicted, "band": (float(low[0]), float(high[0])),
            "measured": float(full["accuracy"]), "error": predicted - float(full["accuracy"]),
            "fitted_on": fit.fitted_on, "law": fit.law, "scores": fit.scores, "curve": curve, "fit": fit}
