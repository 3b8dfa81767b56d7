"""Augmentation decided from the data: which flips and transformations keep a class, and how to fill.

A horizontal flip leaves a cat a cat, but turns a handwritten 2 into a shape no
one writes, a grating at 45 degrees into one at 135, and some characters into
others. Whether a transformation keeps the class is measured in the backbone's
feature space, which knows photos: a linear probe on the features of originals
(two folds) is scored on held-out originals and on their transformed copies; a
transformation whose copies it classifies clearly worse changes what the image
shows and is left out. A flip must also give copies that look like the data (a
probe cannot tell them from originals): an upside-down photo is still a cat, but
not one the validation set holds. Raw pixels are the fallback only where the
features cannot speak (no backbone on this machine, or a probe near chance): a
pixel probe is position-sensitive and reads any mirror of a natural photo as a
change of class. When "auto", rotation, zoom, shift and contrast are measured the same way
(copies drawn at the config's strength) and a transformation that costs the probe clearly
more than noise is set to 0; when no flip and no geometric transformation is left, the
augmentation is not expected to pay (contrast alone the frozen features already see
through) and is turned off, said in the reasons.

Rotation, zoom and shift uncover pixels that the layer must fill. Keras fills
them by reflecting the image, which mirrors strokes touching the border back
into the frame. Images on a plain background (documents, characters, product
shots) are filled with that background colour instead; photos keep "reflect".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

from core.data.dataset import Dataset, subset
from core.train.strategies import Augment, augmentation
from core.features.neighbours import l2_normalise
from core.nets.backbones import list_backbones, weights_location
from core.features.probe import linear_probe
from core.nets.loaded import loaded_backbone
from core.train import pixels as pixel_baseline

SAMPLE_PER_CLASS = 100
FEATURE_SAMPLE = 120  # images for the feature-space checks (each goes through the backbone 1 + 6 times)
FEATURE_MIN_PER_CLASS = 20  # a probe trained on half the sample needs about 10 of each class (digits: 6 let a mirrored 2 pass)
TRANSFORMS = ("rotation", "zoom", "translation", "contrast")
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
    space: str = "pixels"  # where it was measured: "features" (the backbone's) or "pixels"

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


@dataclass
class TransformCheck:
    """A random transformation (at the config's strength) measured like a flip, in feature space."""

    name: str  # one of TRANSFORMS
    strength: float
    accuracy: float  # class probe on held-out originals
    transformed_accuracy: float  # the same probe on transformed copies of them
    stderr: float  # of the paired difference
    keeps_class: bool  # False: the copies cost the probe clearly more than noise

    @property
    def allowed(self) -> bool:
        return self.keeps_class


def _fit_probe(X: np.ndarray, y: np.ndarray):
    return linear_probe().fit(X, y)


def _unit(X: np.ndarray) -> np.ndarray:
    return l2_normalise(np.asarray(X, np.float32))


def transformed(pixels: np.ndarray, name: str, aug: Augment, seed: int, batch: int = 32) -> np.ndarray:
    """Copies of ``pixels`` under one flip or one random transformation at ``aug``'s strength (and
    its fill, resolved), drawn with ``seed``: what training would show the network."""
    if name in ("horizontal", "vertical"):
        return _flip(pixels, name)
    one = replace(aug, enabled=True, flip="", fill="reflect" if aug.fill == "auto" else aug.fill,
                  **{t: (getattr(aug, t) if t == name else 0.0) for t in TRANSFORMS})
    layers = augmentation(one, seed)
    return np.concatenate([np.asarray(layers(pixels[i:i + batch].astype(np.float32), training=True))
                           for i in range(0, len(pixels), batch)])


def feature_checks(pixels: np.ndarray, y: np.ndarray, features, aug: Augment | None = None,
                   seed: int = 0) -> tuple[list[FlipCheck], list[TransformCheck]] | None:
    """Flips and transformations judged on the backbone's features: ``features(pixels)`` maps images
    (at the backbone's size) to pooled feature vectors. A probe on originals, two folds, is scored
    on held-out originals and on their copies; a flip must also give copies that a probe cannot tell
    from originals. ``None`` when the features cannot speak (too few images, or a probe near chance)."""
    aug = aug or Augment()
    y = np.asarray(y)
    counts = np.bincount(y)
    if len(counts[counts > 0]) < 2 or counts[counts > 0].min() < 2:
        return None
    X = _unit(features(pixels))
    names = ["horizontal", "vertical", *[t for t in TRANSFORMS if getattr(aug, t)]]
    copies = {t: _unit(features(transformed(pixels, t, aug, seed))) for t in names}
    right = {t: np.zeros(len(y)) for t in ("original", *names)}
    for a, b in _halves(y, seed):
        probe = _fit_probe(X[a], y[a])
        right["original"][b] = probe.predict(X[b]) == y[b]
        for t in names:
            right[t][b] = probe.predict(copies[t][b]) == y[b]
    n, acc = len(y), float(right["original"].mean())
    chance = counts.max() / n
    if not acc - chance > 2 * np.sqrt(max(acc * (1 - acc), 1e-9) / n):
        return None  # the features do not separate the classes: they cannot judge a flip
    flip_out, other = [], []
    for t in names:
        diff = right["original"] - right[t]
        stderr = float(diff.std(ddof=1) / np.sqrt(n))
        keeps = _keeps_class(float(diff.mean()), stderr, acc - chance)
        if t in ("horizontal", "vertical"):
            told, told_se = _tells_apart(X, copies[t], y, seed)
            looks = bool(told - 0.5 <= max(MIN_DROP, 2 * told_se))
            flip_out.append(FlipCheck(t, acc, float(right[t].mean()), stderr, told, told_se, keeps, looks, "features"))
        else:
            other.append(TransformCheck(t, float(getattr(aug, t)), acc, float(right[t].mean()), stderr,
                                        keeps is not False))
    return flip_out, other


def _tells_apart(X: np.ndarray, Xf: np.ndarray, y: np.ndarray, seed: int) -> tuple[float, float]:
    """Two-fold accuracy of a feature probe telling transformed copies from originals (an image and
    its copy stay in one fold), and its standard error."""
    right = []
    for a, b in _halves(y, seed):
        probe = _fit_probe(np.concatenate([X[a], Xf[a]]), np.r_[np.zeros(len(a), int), np.ones(len(a), int)])
        right.append(probe.predict(np.concatenate([X[b], Xf[b]])) == np.r_[np.zeros(len(b), int), np.ones(len(b), int)])
    right = np.concatenate(right)
    return float(right.mean()), float(right.std(ddof=1) / np.sqrt(len(right)))


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
    transforms: list[TransformCheck] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"augment": asdict(self.augment), "flips": [{**asdict(c), "allowed": c.allowed} for c in self.flips],
                "transforms": [{**asdict(c), "allowed": c.allowed} for c in self.transforms],
                "border": self.border, "sample_size": self.sample_size, "reasons": self.reasons}


def _flip_reason(c: FlipCheck) -> str:
    kept = {True: "still classifies", False: "misreads", None: "cannot judge (near chance on originals)"}
    verdict = ("allowed" if c.allowed else "left out: it changes what the image shows"
               if c.keeps_class is False else "left out: the flipped copies do not look like the data"
               if not c.looks_like_data else
               "left out: the measurement cannot show it keeps the class (choose it to override)")
    probe = "A linear probe on the backbone's features" if c.space == "features" else "A pixel probe"
    return (f"{c.direction.capitalize()} flip {verdict}. {probe} trained on originals "
            f"{kept[c.keeps_class]} the flipped copies "
            f"({c.accuracy:.1%} on held-out originals, {c.flipped_accuracy:.1%} flipped, ± {c.stderr:.1%}); "
            f"a probe tells flipped copies from originals {c.looks_flipped:.1%} of the time "
            f"(50%: they look like the data; ± {c.looks_stderr:.1%}).")


def decide(pixels: np.ndarray, y: np.ndarray, aug: Augment | None = None, seed: int = 0,
           seen: tuple | None = None) -> AugmentDecision:
    """Resolve the "auto" fields of ``aug`` from ``pixels`` (uint8, n x h x w x 3) and labels.

    ``seen``: ``(images at the backbone's size, their labels, features)`` with ``features(images)``
    the backbone's pooled features: flips and, when the flip is "auto", each transformation are
    then judged in feature space; without it (or where the features cannot separate the classes)
    the flips fall back to the pixel probe and the transformations stay as set."""
    aug = aug or Augment()
    reasons, checks, border, transforms = [], [], {}, []
    fill, fill_value = aug.fill, aug.fill_value
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
    resolved = replace(aug, fill=fill, fill_value=float(fill_value))
    if aug.flip == "auto":
        measured = feature_checks(seen[0], seen[1], seen[2], resolved, seed) if seen is not None else None
        if measured is None:
            checks = flip_checks(pixels, y, seed)
            if seen is not None:
                reasons.append("The backbone's features do not separate the sampled classes beyond chance, so "
                               "they cannot judge the flips: the pixel probe decides them.")
        else:
            checks, transforms = measured
        resolved = replace(resolved, flip=flip_mode(checks),
                           **{t.name: 0.0 for t in transforms if not t.allowed})
        reasons += [_flip_reason(c) for c in checks]
        for t in transforms:
            reasons.append(f"{t.name.capitalize()} (±{t.strength:g}) {'kept' if t.allowed else 'left out'}: the "
                           f"probe scores transformed copies {t.transformed_accuracy:.1%} against {t.accuracy:.1%} "
                           f"on originals (± {t.stderr:.1%})"
                           + ("." if t.allowed else ", clearly worse: it changes what the features see of the class."))
        geometric = [t for t in transforms if t.name != "contrast"]
        if geometric and not any(t.allowed for t in geometric) and not resolved.flip:
            resolved = replace(resolved, enabled=False)
            kept = [t for t in transforms if t.allowed]
            reasons.append(
                "Augmentation is not expected to pay on this data: every flip and geometric transformation "
                "measured changes what the features see of the class"
                + (f", and {' and '.join(t.name for t in kept)} alone the frozen features already see through "
                   "(the probe scores such copies within noise of the originals)" if kept else "")
                + ". Runs train without augmentation (choose it to override).")
    else:
        reasons.append(f"Flip: {aug.flip.replace('_', ' ') or 'none'}, as chosen.")
    return AugmentDecision(resolved, checks, border, int(len(y)), reasons, transforms)


def resolve_augment(aug: Augment, ds: Dataset, seed: int = 0, per_class: int = SAMPLE_PER_CLASS,
                    backbone=None) -> AugmentDecision:
    """``decide`` on a seeded sample of the training split of ``ds`` (decoded at 32 px), with the
    features of ``backbone`` (a loaded ``core.nets.backbones.Backbone``; None: the first backbone
    with ImageNet weights on this machine, if any) on a smaller sample at its input size."""

    if not aug.enabled or (aug.flip != "auto" and aug.fill != "auto"):
        return AugmentDecision(aug, [], {}, 0, ["Augmentation as chosen."])
    sample = subset(ds, per_class, seed, splits=("train",))
    pix, valid = pixel_baseline.decode(sample.paths("train"))
    seen = feature_view(ds, backbone or _default_backbone(), seed, per_class) if aug.flip == "auto" else None
    return decide(pix[valid], sample.labels("train")[valid], aug, seed, seen)


def feature_view(ds: Dataset, backbone, seed: int = 0, per_class: int = SAMPLE_PER_CLASS) -> tuple | None:
    """``decide``'s ``seen``: a seeded sample of the training split (at most ``FEATURE_SAMPLE`` images,
    ``FEATURE_MIN_PER_CLASS`` a class at least) decoded at ``backbone``'s input size, its labels, and
    the backbone's pooled features on the engine; None without a backbone."""
    if backbone is None:
        return None
    few = subset(ds, min(per_class, max(FEATURE_MIN_PER_CLASS, FEATURE_SAMPLE // max(ds.num_classes, 1))),
                 seed, splits=("train",))
    big, ok = pixel_baseline.decode(few.paths("train"), size=backbone.input_size)
    return big[ok], few.labels("train")[ok], backbone.frozen_forward("avg")


def _default_backbone():
    """The first backbone with ImageNet weights on this machine (loaded once per process), or None:
    a run without a backbone of its own (from scratch) still judges flips on features that know photos."""
    local = [s.name for s in list_backbones() if weights_location(s) is not None]
    if not local:
        return None
    try:
        return loaded_backbone(local[0])
    except Exception:  # noqa: BLE001  (weights that fail to load: the pixel test decides)
        return None
