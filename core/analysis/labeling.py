"""Auto-labelling of unlabelled photos: zero-shot from ImageNet, or few-shot from labelled photos.

Two ways to label a photo with one of a dataset's classes:

- **zero-shot from ImageNet**: each class maps to one or more of the 1,000
  ImageNet classes (suggested from the class name by
  ``core.analysis.imagenet_mapping``, editable); a photo gets the
  class whose mapped ImageNet probabilities sum highest, and that sum is its
  confidence. The probabilities come from the backbone's own ImageNet top
  applied to the cached pooled features (its top *is* global average pooling
  then a dense softmax), so the same cached features serve both methods.
- **few-shot**: logistic regression (or 5-NN) on L2-normalised cached pooled
  features of the photos already labelled; it works from ~5 photos a class.

Photos that look mislabelled are ``core.analysis.label_issues``.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from core.analysis.imagenet_mapping import default_mapping, imagenet_names
from core.features.neighbours import KNN_K, l2_normalise
from core.data.dataset import BadFile, Dataset, ImageRecord, fingerprint_files
from core.errors import BadImage, Cancelled, TransferLabError
from core.features.dataset import StageProgress, cached_extract, dataset_features
from core.data.images import is_image_name, probe
from core.data.pipeline import image_dataset
from core.features.cache import ExtractProgress
from core.nets.backbones import load_classifier, resolve
from core.serve.inference import Predictor

METHODS = ("zero_shot", "few_shot", "compare")
METHOD_NAMES = {"zero_shot": "Zero-shot (ImageNet)", "few_shot": "Few-shot (your labelled photos)",
                "compare": "Compare both"}
FEW_SHOT_MODELS = ("logreg", "knn")
FEW_SHOT_NAMES = {"logreg": "Logistic regression", "knn": "5 nearest neighbours"}
UNLABELLED = "unlabelled"
MAX_UNLABELLED = 20_000  # files looked at in one folder of unlabelled photos
LOGREG_C = 10.0


class LabelingError(TransferLabError):
    """Auto-labelling cannot run as asked (no classes, no labelled photos, no ImageNet top...)."""


# ---------------------------------------------------------------- ImageNet probabilities

_HEADS: dict[tuple[str, str], tuple[np.ndarray, np.ndarray] | None] = {}


def _pooled_head(net: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """``(W, b)`` when ``net`` ends in global average pooling, dropout, then a softmax dense layer."""
    import keras

    layers = list(net.layers)
    if not layers or not isinstance(layers[-1], keras.layers.Dense):
        return None
    dense = layers[-1]
    if getattr(dense.activation, "__name__", "") != "softmax":
        return None
    i = len(layers) - 2
    while i >= 0 and isinstance(layers[i], keras.layers.Dropout):
        i -= 1
    if i < 0 or not isinstance(layers[i], keras.layers.GlobalAveragePooling2D) or layers[i].keepdims:
        return None
    W, b = dense.get_weights()
    return np.asarray(W, np.float32), np.asarray(b, np.float32)


def imagenet_head(backbone: str, weights: Any = "imagenet") -> tuple[np.ndarray, np.ndarray] | None:
    """The backbone's ImageNet top as ``(W, b)`` on average-pooled features, or None when
    its top is something else (VGG's dense layers): then the full classifier runs on the photos."""
    spec = resolve(backbone)
    if not spec.has_top:
        raise LabelingError(f"{spec.display_name} has no ImageNet classification top: use few-shot labelling.")
    key = (spec.name, spec.weights_id(weights, 0, spec.default_size))
    if key not in _HEADS:
        model, _ = load_classifier(spec, weights=weights)
        nets = [layer for layer in model.layers if hasattr(layer, "layers")]
        _HEADS[key] = _pooled_head(nets[-1]) if nets else None
    return _HEADS[key]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def probabilities_from_pooled(X: np.ndarray, head: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """ImageNet probabilities from average-pooled features through the backbone's own top."""
    W, b = head
    return softmax(np.asarray(X, np.float64) @ W.astype(np.float64) + b.astype(np.float64))


def classifier_probabilities(paths: Sequence[str], backbone: str, weights: Any = "imagenet", batch_size: int = 32,
                             progress: Callable[[Any], None] | None = None,
                             should_stop: Callable[[], bool] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """ImageNet probabilities of image files through the full classifier, and a decode-ok mask.
    The frozen classifier runs on the engine (``core.nets.engine``, parity-guarded) as the
    live classifier's does."""

    spec = resolve(backbone)
    model, size = load_classifier(spec, weights=weights)
    forward = Predictor(model, size, [], name=spec.name, kind="imagenet", source=spec.name,
                        weights="random" if weights is None else str(weights)).forward
    out, ok_all = [], []
    start, done = time.perf_counter(), 0
    for pixels, ok in image_dataset(list(paths), None, size, batch_size, with_valid_mask=True):
        if should_stop and should_stop():
            raise Cancelled("Labelling was cancelled.")
        out.append(np.asarray(forward(pixels), np.float64))
        ok_all.append(ok.numpy())
        done += len(out[-1])
        if progress:
            progress(ExtractProgress(done, len(paths), done / max(time.perf_counter() - start, 1e-9)))
    return np.concatenate(out), np.concatenate(ok_all)


def zero_shot_scores(probs: np.ndarray, mapping: Mapping[str, Sequence[int]], classes: Sequence[str]) -> np.ndarray:
    """``(n, k)``: for each class, the summed ImageNet probability of its mapped classes."""
    missing = [c for c in classes if not list(mapping.get(c, []))]
    if missing:
        raise LabelingError(
            "Zero-shot labelling needs at least one ImageNet class for every class; none chosen for: "
            + ", ".join(f"'{c}'" for c in missing) + "."
        )
    return np.stack([probs[:, list(mapping[c])].sum(axis=1) for c in classes], axis=1)


# ---------------------------------------------------------------- few-shot

def few_shot_model(model: str = "logreg", n_per_class_min: int = KNN_K):
    """The classifier used for few-shot labelling (on L2-normalised features)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    if model == "logreg":
        return LogisticRegression(C=LOGREG_C, max_iter=5000)
    if model == "knn":
        return KNeighborsClassifier(n_neighbors=max(1, min(KNN_K, n_per_class_min)), metric="cosine")
    raise LabelingError(f"Unknown few-shot model '{model}'; use one of {', '.join(FEW_SHOT_MODELS)}.")


def few_shot_probabilities(X_labelled: np.ndarray, y_labelled: np.ndarray, X_query: np.ndarray, k: int,
                           model: str = "logreg") -> np.ndarray:
    """``(n_query, k)`` class probabilities from a classifier fitted on the labelled photos."""
    y = np.asarray(y_labelled, np.int64)
    counts = np.bincount(y, minlength=k)
    if (counts == 0).any() or k < 2:
        raise LabelingError("Few-shot labelling needs labelled photos of at least two classes, and of every class.")
    clf = few_shot_model(model, int(counts.min()))
    clf.fit(l2_normalise(X_labelled), y)
    probs = np.zeros((len(X_query), k))
    if len(X_query):
        probs[:, clf.classes_] = clf.predict_proba(l2_normalise(X_query))
    return probs


# ---------------------------------------------------------------- unlabelled photos

def scan_unlabelled(folder: str | os.PathLike, name: str | None = None) -> Dataset:
    """Every image under ``folder`` (any depth), validated, as a one-split dataset to extract features from.

    Its class is the placeholder ``unlabelled``; unreadable files are listed with the reason.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise LabelingError(f"Folder not found: {root}")
    files = []
    try:
        for p in root.rglob("*"):
            if any(part.startswith((".", "__MACOSX")) for part in p.relative_to(root).parts):
                continue
            if p.is_file() and not p.is_symlink():
                files.append(p)
                if len(files) > MAX_UNLABELLED:
                    raise LabelingError(
                        f"{root} holds more than {MAX_UNLABELLED:,} files; point at a smaller folder of photos.")
    except OSError as exc:
        raise LabelingError(f"Cannot read the folder {root}: {exc.strerror or exc}") from exc
    files.sort()
    bad: list[BadFile] = []
    candidates = []
    for f in files:
        if is_image_name(f):
            candidates.append(f)
        else:
            bad.append(BadFile(str(f), f"not an image file type ({f.suffix or 'no extension'})"))

    def check(path: Path):
        try:
            return probe(path)
        except BadImage as exc:
            return str(exc)
        except Exception as exc:  # a decoder bug must not stop the rest
            return f"cannot decode: {type(exc).__name__}: {exc}"

    records = []
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        for path, info in zip(candidates, pool.map(check, candidates)):
            if isinstance(info, str):
                bad.append(BadFile(str(path), info))
            else:
                records.append(ImageRecord(str(path), UNLABELLED, "train", info.width, info.height, info.mode,
                                           info.format, info.file_bytes))
    if not records:
        raise LabelingError(f"No readable photos found in {root} ({len(bad)} unreadable files).")
    fp = "unlabelled-" + fingerprint_files([Path(r.path) for r in records], root)
    return Dataset(name=name or root.name, root=str(root), classes=[UNLABELLED], records=records,
                   bad_files=bad, fingerprint=fp, split_source="folders")


# ---------------------------------------------------------------- auto-labelling

@dataclass
class LabelResult:
    """Suggested labels, one row per photo, most confident first."""

    frame: pd.DataFrame  # path, file, suggestion, confidence, + per-method columns
    classes: list[str]
    method: str
    backbone: str
    bad_files: list[BadFile] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    model: str = ""  # the few-shot classifier, when one was used

    def accepted(self, threshold: float) -> pd.DataFrame:
        return self.frame[self.frame["confidence"] >= threshold]


def _top_imagenet(probs: np.ndarray, names: Sequence[str]) -> list[str]:
    top = probs.argmax(axis=1)
    return [f"{names[i]} ({probs[r, i]:.0%})" for r, i in enumerate(top)]


def auto_label(
    unlabelled: Dataset,
    classes: Sequence[str],
    backbone: str,
    *,
    method: str = "zero_shot",
    mapping: Mapping[str, Sequence[int]] | None = None,
    labelled: Dataset | None = None,
    model: str = "logreg",
    weights: Any = "imagenet",
    progress: StageProgress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> LabelResult:
    """Suggest one of ``classes`` for every photo of ``unlabelled``.

    ``method``: ``zero_shot`` (needs ``mapping`` class -> ImageNet indices; default:
    the suggestions), ``few_shot`` (needs ``labelled``, a dataset with photos of
    every class) or ``compare`` (both; where they agree the confidence is the
    lower of the two, where they disagree it is 0 and few-shot's pick is suggested).
    ``backbone``: a name or its ``BackboneSpec`` (resolved once here and passed on).
    """

    start = time.perf_counter()
    backbone = resolve(backbone)
    classes = list(classes)
    if method not in METHODS:
        raise LabelingError(f"Unknown method '{method}'; use one of {', '.join(METHODS)}.")
    if len(classes) < 2:
        raise LabelingError("Auto-labelling needs at least two classes; add classes to the dataset first.")
    notes: list[str] = []

    # Check what each method needs before the long extraction.
    if method in ("few_shot", "compare"):
        if labelled is None or not labelled.records:
            raise LabelingError("Few-shot labelling needs labelled photos: add ~5 photos to each class first, "
                                "or use zero-shot.")
        counts = {c: 0 for c in classes}
        for r in labelled.records:
            if r.label in counts:
                counts[r.label] += 1
        empty = [c for c, n in counts.items() if n == 0]
        if empty:
            raise LabelingError("Few-shot labelling needs labelled photos of every class; none yet in: "
                                + ", ".join(f"'{c}'" for c in empty) + ". Add a few, or use zero-shot.")
        few = [f"'{c}' ({n})" for c, n in counts.items() if n < 5]
        if few:
            notes.append("Few photos to learn from in " + ", ".join(few) + "; about 5 a class or more works better.")
    names: list[str] = []
    if method in ("zero_shot", "compare"):
        names = imagenet_names(backbone)
        mapping = dict(mapping) if mapping is not None else default_mapping(classes, names)
        zero_shot_scores(np.zeros((1, len(names))), mapping, classes)  # raises if a class has no mapping
        if weights != "imagenet":
            raise LabelingError("Zero-shot labelling needs the backbone's ImageNet weights.")

    fs = cached_extract(unlabelled, backbone, split="train", weights=weights,
                        progress=(lambda p: progress("photos to label", p)) if progress else None,
                        should_stop=should_stop)
    X_all = np.asarray(fs.X)
    ok = np.asarray(fs.valid, bool)
    paths = list(fs.paths)
    bad = list(unlabelled.bad_files) + [BadFile(p, "could not be decoded when its features were extracted")
                                        for p, v in zip(paths, ok) if not v]
    X = X_all[ok]
    kept = [p for p, v in zip(paths, ok) if v]
    frame = pd.DataFrame({"path": kept, "file": [Path(p).name for p in kept]})

    if method in ("zero_shot", "compare"):
        head = imagenet_head(backbone, weights)
        if head is not None:
            probs = probabilities_from_pooled(X, head)
        else:
            probs_all, ok2 = classifier_probabilities(
                paths, backbone, weights, progress=(lambda p: progress("ImageNet classifier", p)) if progress else None,
                should_stop=should_stop)
            probs = probs_all[ok]
        scores = zero_shot_scores(probs, mapping, classes)
        frame["zero_shot"] = [classes[i] for i in scores.argmax(axis=1)]
        frame["zero_shot_confidence"] = scores.max(axis=1)
        frame["imagenet_top"] = _top_imagenet(probs, names)
    if method in ("few_shot", "compare"):
        lf = dataset_features(labelled, backbone, weights,
                              (lambda s, p: progress(f"labelled photos ({s})", p)) if progress else None, should_stop)
        Xl, yl_ds = lf.X, lf.y
        index = {c: i for i, c in enumerate(classes)}
        names_l = [labelled.classes[i] for i in yl_ds]
        keep = np.array([n in index for n in names_l], bool)
        yl = np.array([index[n] for n, k in zip(names_l, keep) if k], np.int64)
        fprobs = few_shot_probabilities(Xl[keep], yl, X, len(classes), model)
        frame["few_shot"] = [classes[i] for i in fprobs.argmax(axis=1)]
        frame["few_shot_confidence"] = fprobs.max(axis=1)

    if method == "zero_shot":
        frame["suggestion"], frame["confidence"] = frame["zero_shot"], frame["zero_shot_confidence"]
    elif method == "few_shot":
        frame["suggestion"], frame["confidence"] = frame["few_shot"], frame["few_shot_confidence"]
    else:
        agree = frame["zero_shot"] == frame["few_shot"]
        frame["agree"] = agree
        frame["suggestion"] = frame["few_shot"]
        frame["confidence"] = np.where(agree, np.minimum(frame["zero_shot_confidence"], frame["few_shot_confidence"]), 0.0)
    frame = frame.sort_values(["confidence", "file"], ascending=[False, True], kind="stable").reset_index(drop=True)
    first = ["path", "file", "suggestion", "confidence"]
    frame = frame[first + [c for c in frame.columns if c not in first]]
    return LabelResult(frame, classes, method, backbone, bad, time.perf_counter() - start, notes,
                       model if method != "zero_shot" else "")
