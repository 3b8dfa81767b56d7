"""Augmentation decided from the data: which flips keep a class, and how to fill.

A horizontal flip leaves a cat a cat, but turns a handwritten 2 into a shape no
one writes, and some characters into others. Whether a flip keeps the class is
measured: a probe (the pixel baseline) is trained on originals and scored on
held-out originals and on their flipped copies; a flip whose copies it
classifies clearly worse changes what the image shows and is left out.

Rotation, zoom and shift uncover pixels that the layer must fill. Keras fills
them by reflecting the image, which mirrors strokes touching the border back
into the frame. Images on a plain background (documents, characters, product
shots) are filled with that background colour instead; photos keep "reflect".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from core.data.dataset import Dataset, subset
from core.train.strategies import Augment

SAMPLE_PER_CLASS = 100
PLAIN_BORDER_STD = 12.0  # grey levels around the commonest border colour that count as that colour
PLAIN_SHARE = 0.5  # a background when at least this share of the border pixels has one colour
MIN_DROP = 0.02  # a flip costing the probe more accuracy than this and 2 standard errors changes the class
LOST_SKILL = 0.25  # it keeps the class when, at 2 standard errors, it costs at most this share of the probe's skill


@dataclass
class FlipCheck:
    direction: str  # "horizontal" | "vertical"
    accuracy: float  # class probe on held-out originals
    flipped_accuracy: float  # the same probe on the same images, flipped
    stderr: float  # of the paired difference
    looks_flipped: float  # accuracy of a probe telling flipped copies from originals (0.5: it cannot)
    looks_stderr: float
    keeps_class: bool | None  # None: the class probe is too weak to tell
    looks_like_data: bool  # the flipped copies cannot be told from originals

    @property
    def allowed(self) -> bool:
        """Both measured: the class is kept and the copies look like the data. When the class
        probe is near chance (photos, for a pixel probe) neither test has the power to clear a
        flip, so it is left out: no default may change what an image shows."""
        return self.looks_like_data and self.keeps_class is True


def _flip(pixels: np.ndarray, direction: str) -> np.ndarray:
    return pixels[:, :, ::-1] if direction == "horizontal" else pixels[:, ::-1]


def _halves(y: np.ndarray, seed: int):
    from sklearn.model_selection import StratifiedKFold

    return StratifiedKFold(2, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)


def _tells_flipped(pixels: np.ndarray, y: np.ndarray, direction: str, seed: int) -> tuple[float, float]:
    """Two-fold accuracy of a pixel probe telling flipped copies from originals (an image
    and its copy stay in one fold), and its standard error."""
    from core.train import pixels as pixel_baseline

    right = []
    for a, b in _halves(y, seed):
        both = np.concatenate([pixels[a], _flip(pixels[a], direction)])
        target = np.r_[np.zeros(len(a), int), np.ones(len(a), int)]
        probe = pixel_baseline.fit(both, target, seed)
        test = np.concatenate([pixels[b], _flip(pixels[b], direction)])
        right.append(probe.probabilities(test).argmax(1) == np.r_[np.zeros(len(b), int), np.ones(len(b), int)])
    right = np.concatenate(right)
    return float(right.mean()), float(right.std(ddof=1) / np.sqrt(len(right)))


def flip_checks(pixels: np.ndarray, y: np.ndarray, seed: int = 0) -> list[FlipCheck]:
    """For each direction: does a class probe trained on originals still classify flipped
    copies (class kept), and can a probe tell flipped copies from originals (looks like data)?"""
    from core.train import pixels as pixel_baseline

    y = np.asarray(y)
    counts = np.bincount(y)
    if len(counts[counts > 0]) < 2 or counts[counts > 0].min() < 2:
        return [FlipCheck(d, *(float("nan"),) * 5, None, False) for d in ("horizontal", "vertical")]
    right = {"original": np.zeros(len(y)), "horizontal": np.zeros(len(y)), "vertical": np.zeros(len(y))}
    for a, b in _halves(y, seed):
        probe = pixel_baseline.fit(pixels[a], y[a], seed)
        right["original"][b] = probe.probabilities(pixels[b]).argmax(1) == y[b]
        for d in ("horizontal", "vertical"):
            right[d][b] = probe.probabilities(_flip(pixels[b], d)).argmax(1) == y[b]
    chance = counts.max() / len(y)
    acc = float(right["original"].mean())
    n = len(y)
    skilled = acc - chance > 2 * np.sqrt(max(acc * (1 - acc), 1e-9) / n)
    out = []
    for d in ("horizontal", "vertical"):
        diff = right["original"] - right[d]
        stderr = float(diff.std(ddof=1) / np.sqrt(n))
        keeps = _keeps_class(float(diff.mean()), stderr, acc - chance) if skilled else None
        told, told_se = _tells_flipped(pixels, y, d, seed)
        looks = bool(told - 0.5 <= max(MIN_DROP, 2 * told_se))
        out.append(FlipCheck(d, acc, float(right[d].mean()), stderr, told, told_se, keeps, looks))
    return out


def _keeps_class(drop: float, stderr: float, skill: float) -> bool | None:
    """``False``: the flip costs the probe clearly more than noise; ``True``: even at two standard
    errors it costs at most ``LOST_SKILL`` of the probe's skill over chance; ``None``: the probe
    is too weak to tell (letters placed anywhere defeat a pixel probe, and a flip that turns an
    F into a mirror F must not pass for harmless because the probe misses it)."""
    if drop > max(MIN_DROP, 2 * stderr):
        return False
    return True if drop + 2 * stderr <= max(MIN_DROP, LOST_SKILL * skill) else None


def flip_mode(checks: list[FlipCheck]) -> str:
    """The ``Augment.flip`` the checks allow ("" when none, or when they cannot tell)."""
    ok = {c.direction for c in checks if c.allowed}
    if ok == {"horizontal", "vertical"}:
        return "horizontal_and_vertical"
    return next(iter(ok), "")


def background(pixels: np.ndarray) -> dict:
    """Whether images sit on a plain background: most of their 1-pixel border (over the
    sample) within ``PLAIN_BORDER_STD`` grey levels of one grey colour; and that colour."""
    ring = np.concatenate([pixels[:, 0], pixels[:, -1], pixels[:, 1:-1, 0], pixels[:, 1:-1, -1]], axis=1)
    ring = ring.reshape(-1, 3).astype(np.float32)
    grey = ring.mean(1)
    hist = np.bincount(np.clip(grey, 0, 255).astype(int), minlength=256)
    window = np.convolve(hist, np.ones(2 * int(PLAIN_BORDER_STD) + 1), mode="same")
    mode = int(window.argmax())
    near = np.abs(grey - mode) <= PLAIN_BORDER_STD
    share = float(near.mean())
    colour = ring[near].mean(0) if near.any() else ring.mean(0)
    plain = share >= PLAIN_SHARE and bool(np.ptp(colour) <= 2 * PLAIN_BORDER_STD)
    return {"plain": bool(plain), "share": share, "colour": [float(c) for c in colour],
            "fill_value": float(colour.mean())}


@dataclass
class AugmentDecision:
    augment: Augment
    flips: list[FlipCheck]
    border: dict
    sample_size: int
    reasons: list[str]

    def to_dict(self) -> dict:
        return {"augment": asdict(self.augment), "flips": [{**asdict(c), "allowed": c.allowed} for c in self.flips],
                "border": self.border, "sample_size": self.sample_size, "reasons": self.reasons}


def decide(pixels: np.ndarray, y: np.ndarray, aug: Augment | None = None, seed: int = 0) -> AugmentDecision:
    """Resolve the "auto" fields of ``aug`` from ``pixels`` (uint8, n x h x w x 3) and labels."""
    aug = aug or Augment()
    reasons, checks, border = [], [], {}
    flip, fill, fill_value = aug.flip, aug.fill, aug.fill_value
    if aug.flip == "auto":
        checks = flip_checks(pixels, y, seed)
        flip = flip_mode(checks)
        for c in checks:
            kept = {True: "still classifies", False: "misreads", None: "cannot judge (near chance on originals)"}
            verdict = ("allowed" if c.allowed else "left out: it changes what the image shows"
                       if c.keeps_class is False or not c.looks_like_data else
                       "left out: the measurement cannot show it keeps the class (choose it to override)")
            reasons.append(
                f"{c.direction.capitalize()} flip {verdict}. A pixel probe trained on originals "
                f"{kept[c.keeps_class]} the flipped copies "
                f"({c.accuracy:.1%} on held-out originals, {c.flipped_accuracy:.1%} flipped, ± {c.stderr:.1%}); "
                f"a probe tells flipped copies from originals {c.looks_flipped:.1%} of the time "
                f"(50%: they look like the data; ± {c.looks_stderr:.1%}).")
    else:
        reasons.append(f"Flip: {aug.flip.replace('_', ' ') or 'none'}, as chosen.")
    if aug.fill == "auto":
        border = background(pixels)
        if border["plain"]:
            fill, fill_value = "constant", border["fill_value"]
            reasons.append(f"Fill: the images sit on a plain background ({border['share']:.0%} of their border "
                           f"pixels share one colour), so uncovered pixels get that colour ({fill_value:.0f}) "
                           "instead of a mirror image of the border.")
        else:
            fill = "reflect"
            reasons.append(f"Fill: no plain background (only {border['share']:.0%} of the border pixels share a "
                           "colour, as in photos), so uncovered pixels mirror the image (reflect).")
    resolved = replace(aug, flip=flip, fill=fill, fill_value=float(fill_value))
    return AugmentDecision(resolved, checks, border, int(len(y)), reasons)


def resolve_augment(aug: Augment, ds: Dataset, seed: int = 0, per_class: int = SAMPLE_PER_CLASS) -> AugmentDecision:
    """``decide`` on a seeded sample of the training split of ``ds`` (decoded at 32 px)."""
    from core.train import pixels as pixel_baseline

    if not aug.enabled or (aug.flip != "auto" and aug.fill != "auto"):
        return AugmentDecision(aug, [], {}, 0, ["Augmentation as chosen."])
    sample = subset(ds, per_class, seed, splits=("train",))
    pix, valid = pixel_baseline.decode(sample.paths("train"))
    return decide(pix[valid], sample.labels("train")[valid], aug, seed)
