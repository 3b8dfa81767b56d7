"""Intervals on every figure and verdicts on every comparison, by stated methods.

- One accuracy: the Wilson score interval (95%), which stays inside 0..1 and keeps its coverage
  on the 60-image validation sets where the normal approximation does not.
- Balanced accuracy (mean recall over classes): a percentile bootstrap that resamples images
  within each class (2,000 draws, seeded), so every class stays present in every draw.
- Two figures scored on the same images: McNemar's exact test (a binomial test on the images
  one gets right and the other wrong) and its matching interval for the lead (Clopper-Pearson on
  those discordant images, conditional on their number): the interval excludes 0 exactly when
  the test rejects, so the words and the bars never disagree.
- Several figures: each is compared with the leader and the p-values are Holm-adjusted, so
  "resolved" keeps its 5% error rate over the whole table, not per pair.
- The "best" marker: the leader when it beats every other clearly; otherwise the cheapest of
  those the data cannot tell from the leader.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
Z95 = 1.959963984540054
BOOTSTRAP_DRAWS = 2000
METHODS = {
    "accuracy": "Wilson score interval",
    "balanced_accuracy": f"percentile bootstrap over images within each class ({BOOTSTRAP_DRAWS} draws)",
    "paired": "McNemar exact test; Holm-adjusted when several are compared with the leader",
}


def wilson(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of ``correct`` out of ``n``; (nan, nan) for no images."""
    if n <= 0:
        return float("nan"), float("nan")
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if correct <= 0 else max(0.0, centre - half)
    return float(low), float(1.0 if correct >= n else min(1.0, centre + half))


def recalls(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """Recall of each class (nan for a class with no images)."""
    y, pred = np.asarray(y, np.int64), np.asarray(pred, np.int64)
    support = np.bincount(y, minlength=k).astype(float)
    hits = np.bincount(y[pred == y], minlength=k).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, hits / np.maximum(support, 1), np.nan)


def balanced_accuracy(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    """Mean recall over the classes that have images: what accuracy would be on balanced classes."""
    r = recalls(y, pred, k)
    return float(np.nanmean(r)) if np.isfinite(r).any() else float("nan")


def balanced_interval(y: np.ndarray, pred: np.ndarray, k: int, draws: int = BOOTSTRAP_DRAWS,
                      seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the balanced accuracy, resampling within each class."""
    y, pred = np.asarray(y, np.int64), np.asarray(pred, np.int64)
    if len(y) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    right = (pred == y).astype(float)
    per_class = []
    for c in np.unique(y):
        hits = right[y == c]
        # each draw's recall of class c: the mean of len(hits) draws with replacement = binomial / n
        per_class.append(rng.binomial(len(hits), hits.mean(), size=draws) / len(hits))
    scores = np.mean(per_class, axis=0)
    lo, hi = np.percentile(scores, [2.5, 97.5])
    return float(lo), float(hi)


def interval_text(value: float, low: float, high: float) -> str:
    """``93.3% (95% CI 84.1–97.4%)``."""
    if value is None or not np.isfinite(value):
        return "–"
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return f"{value:.1%}"
    return f"{value:.1%} (95% CI {low * 100:.1f}–{high * 100:.1f}%)"


def _binom_two_sided(b: int, m: int) -> float:
    """Exact two-sided p of ``b`` successes in ``m`` fair coin tosses (the McNemar exact test)."""
    if m == 0:
        return 1.0
    from scipy.stats import binom

    tail = binom.cdf(min(b, m - b), m, 0.5)
    return float(min(1.0, 2 * tail))


def _clopper_pearson(b: int, m: int, alpha: float = ALPHA) -> tuple[float, float]:
    from scipy.stats import beta

    lo = 0.0 if b == 0 else float(beta.ppf(alpha / 2, b, m - b + 1))
    hi = 1.0 if b == m else float(beta.ppf(1 - alpha / 2, b + 1, m - b))
    return lo, hi


@dataclass
class Paired:
    """``a`` against ``b`` on the same ``n`` images: ``lead`` = accuracy of a minus b, its 95%
    interval, the images only ``a`` (``a_only``) or only ``b`` got right, and the exact p."""

    lead: float
    low: float
    high: float
    a_only: int
    b_only: int
    n: int
    p: float

    @property
    def margin(self) -> float:
        """The interval's larger distance from the lead: the "±" said in words."""
        return float(max(self.lead - self.low, self.high - self.lead))


def paired(a_correct, b_correct, alpha: float = ALPHA) -> Paired:
    """McNemar exact test and the lead's conditional exact interval for two figures scored on
    the same images (boolean arrays aligned image by image)."""
    a, b = np.asarray(a_correct, bool), np.asarray(b_correct, bool)
    if a.shape != b.shape:
        raise ValueError("a paired test needs the same images on both sides")
    n = int(len(a))
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(b & ~a))
    m = a_only + b_only
    lead = (a_only - b_only) / n if n else float("nan")
    if m == 0:
        low = high = 0.0
    else:
        lo, hi = _clopper_pearson(a_only, m, alpha)
        low, high = m / n * (2 * lo - 1), m / n * (2 * hi - 1)
    return Paired(float(lead), float(low), float(high), a_only, b_only, n, _binom_two_sided(a_only, m))


def holm(pvalues: list[float]) -> list[float]:
    """Holm step-down adjusted p-values (same order as given)."""
    order = np.argsort(pvalues)
    k = len(pvalues)
    adjusted = np.empty(k)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (k - rank) * pvalues[i]))
        adjusted[i] = running
    return [float(p) for p in adjusted]


@dataclass
class Entry:
    """One figure in a comparison: its ``name``, per-image correctness on the shared images (None:
    not scored on them, so no paired test), its accuracy and images, and a ``cost`` (seconds) for
    breaking ties towards the cheaper."""

    name: str
    correct: np.ndarray | None
    accuracy: float
    n: int
    cost: float = float("nan")
    key: str = ""  # the caller's id for it (names may repeat)


@dataclass
class Verdict:
    name: str
    accuracy: float
    low: float
    high: float
    n: int
    rank: int
    leader: bool
    paired: Paired | None  # the leader against this one (None for the leader, or unpaired)
    p_adjusted: float | None
    resolved: bool | None  # the leader's lead over it resolved; None: the leader itself, or no paired test
    best: bool = False
    text: str = ""
    key: str = ""


def compare_with_leader(entries: list[Entry], what: str = "images", alpha: float = ALPHA) -> list[Verdict]:
    """Verdicts, best first: each entry against the leader (McNemar exact, Holm over the pairs),
    Wilson intervals, and the "best" marker (a resolved winner, or the cheapest of the unresolved)."""
    ranked = sorted([e for e in entries if np.isfinite(e.accuracy)], key=lambda e: -e.accuracy)
    if not ranked:
        return []
    top = ranked[0]
    tests = [paired(top.correct, e.correct) if top.correct is not None and e.correct is not None
             and len(top.correct) == len(e.correct) else None for e in ranked[1:]]
    pvals = [t.p for t in tests if t is not None]
    adjusted = iter(holm(pvals)) if pvals else iter(())
    out = []
    for rank, e in enumerate(ranked):
        low, high = wilson(int(round(e.accuracy * e.n)), e.n) if e.correct is None else wilson(int(np.sum(e.correct)), len(e.correct))
        test = tests[rank - 1] if rank else None
        p_adj = next(adjusted) if test is not None else None
        resolved = None if test is None else bool(p_adj < alpha)
        out.append(Verdict(e.name, float(e.accuracy), low, high, int(e.n), rank, rank == 0, test, p_adj, resolved,
                           key=e.key))
    best_by_cost = _mark_best(out, ranked)
    several = len(pvals) > 1
    for v in out[1:]:
        v.text = verdict_text(out[0], v, what, several)
    lead, tied = out[0], [v.name for v in out[1:] if v.resolved is not True]
    head = f"{lead.name} leads with {interval_text(lead.accuracy, lead.low, lead.high)} on {lead.n} {what}"
    if len(out) == 1:
        lead.text = head + "."
    elif not tied:
        lead.text = head + ", a lead resolved over every other: marked best."
    else:
        best = next(v for v in out if v.best)
        lead.text = (head + f"; its lead over {', '.join(tied)} is not resolved, so "
                     + ("it is marked best only as the leader within noise (no cost to break the tie)."
                        if best is lead and not best_by_cost else
                        "it is marked best as the cheapest of those within noise." if best is lead else
                        f"the cheapest of those within noise, {best.name}, is marked best."))
    return out


def _mark_best(out: list[Verdict], ranked: list[Entry]) -> bool:
    """Mark the best; True when a cost broke a tie."""
    tied = [i for i, v in enumerate(out) if i == 0 or v.resolved is not True]
    if len(tied) == 1:
        out[0].best = True
        return False
    costs = [ranked[i].cost for i in tied]
    if all(np.isfinite(c) for c in costs):
        out[tied[int(np.argmin(costs))]].best = True
        return True
    out[0].best = True  # no cost to break the tie with: the leader, said to be within noise
    return False


def verdict_text(leader: Verdict, other: Verdict, what: str = "images", several: bool = False) -> str:
    """``feature extraction leads linear probe by 1.7 points (95% CI -5.0 to +8.3): not resolved on 60 images``."""
    if other.paired is None:
        return (f"{leader.name} {leader.accuracy:.1%} vs {other.name} {other.accuracy:.1%}: not scored on the same "
                f"{what}, so no paired test; compare their intervals only.")
    t = other.paired
    if t.a_only + t.b_only == 0:
        return (f"{leader.name} and {other.name} get the same {what} right and wrong, image for image: "
                f"no difference to resolve (not resolved on {t.n} {what}).")
    adj = f", Holm-adjusted p = {other.p_adjusted:.2g}" if several else f", p = {t.p:.2g}"
    verdict = "resolved" if other.resolved else "not resolved"
    return (f"{leader.name} leads {other.name} by {t.lead * 100:.1f} points, ±{t.margin * 100:.1f} "
            f"(95% CI {t.low * 100:+.1f} to {t.high * 100:+.1f}; McNemar exact{adj}; {t.a_only} vs {t.b_only} "
            f"{what} only one got right): {verdict} on {t.n} {what}.")


def frame(verdicts: list[Verdict]):
    """The verdicts as a table (pages and the CLI)."""
    import pandas as pd

    return pd.DataFrame([{
        "key": v.key, "name": v.name, "accuracy": v.accuracy, "ci_low": v.low, "ci_high": v.high, "images": v.n,
        "lead_of_leader": v.paired.lead if v.paired else None,
        "lead_low": v.paired.low if v.paired else None, "lead_high": v.paired.high if v.paired else None,
        "p_adjusted": v.p_adjusted, "resolved": v.resolved, "best": v.best, "verdict": v.text,
    } for v in verdicts])
