"""Live classification of photos: a loaded model (a finished run or an ImageNet
classifier), top-k predictions, latency, and batches where a bad file never stops the rest.

Pixels come from ``core.data.images.load_rgb``, the same function the training
pipeline (``core.data.pipeline.image_dataset``) uses, so a photo reaches the model
here exactly as a training image of the same file did. Every model takes raw
RGB 0..255 and holds its own preprocessing.
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from core.errors import BadImage, RunError, TransferLabError, WeightsUnavailable
from core.hashing import file_id
from core.data.images import Source, load_rgb, open_rgb
from core.runs.models import verify as verify_record
from core.serve import trust as run_trust
from core.nets import backbones
from core.nets.engine import FrozenForward
from core.nets.backbones import imagenet_classes, load_classifier, resolve

DEFAULT_TOP_K = 5
_CACHE_SIZE = 4


@dataclass
class Predictor:
    """A model ready to classify: pixels in (``input_size`` square), probabilities out."""

    model: Any
    input_size: int
    classes: list[str]
    name: str
    kind: str  # "imagenet" or "run"
    source: str  # the model file, or the backbone name
    run_id: str | None = None
    weights: str = "imagenet"
    trust: Any = None  # core.serve.trust.RunTrust of a calibrated run; None: "not calibrated"
    with_features: bool = False  # the forward pass also returns the features the head reads
    _forward: Any = field(default=None, repr=False, compare=False)
    _lock: Any = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def binary(self) -> bool:
        """One sigmoid unit for two classes (what every two-class run ends in)."""
        return int(self.model.output.shape[-1]) == 1

    @property
    def num_classes(self) -> int:
        return 2 if self.binary else int(self.model.output.shape[-1])

    def warm_up(self) -> None:
        """Trace the forward function (and convert it for the engine) once so the first photo
        is as fast as the rest."""
        self.probabilities(np.zeros((1, self.input_size, self.input_size, 3), np.uint8))
        self.forward.prepare()

    @property
    def forward(self):
        """The frozen forward pass on the engine (``core.nets.engine.FrozenForward``, kind
        ``probabilities``: its parity guard checks top-1 agreement with TensorFlow). With
        ``with_features`` it returns the head's input features and the outputs side by side
        (one pass; kind ``features``: the guard checks their cosine)."""
        if self._forward is None:
            with self._lock:
                if self._forward is None:
                    import tensorflow as tf

                    model, size = self.model, self.input_size
                    if self.with_features:
                        both = feature_model(model)

                        def call(x):
                            features, outputs = both(x, training=False)
                            return tf.concat([tf.reshape(features, (tf.shape(x)[0], -1)), outputs], axis=1)
                    else:
                        def call(x):
                            return model(x, training=False)
                    reference = tf.function(call, input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32)])
                    network = self._network_id()
                    stable = not network.endswith(("|random", "|download"))
                    kind, pooling = "probabilities", "probabilities"
                    if self.with_features:  # another network to the engine: its own verdict and IR
                        kind, pooling, network = "features", "features+outputs", f"{network}|features+outputs"
                    self._forward = FrozenForward(reference, size, network, pooling, kind=kind,
                                                         ir_key=f"{network}|{size}" if stable else None)
        return self._forward

    def _network_id(self) -> str:
        """The weights this predictor runs: a run's model file digest, or the backbone and its
        ImageNet weights file digest."""
        if self.kind != "imagenet":
            return f"model|{file_id(Path(self.source))}"
        spec = backbones.get_spec(self.source)
        if self.weights == "random":
            return f"{spec.name}-imagenet|random"
        if self.weights != "imagenet":
            return f"{spec.name}-imagenet|{file_id(Path(self.weights))}"
        where = backbones.weights_location(spec, include_top=True, size=self.input_size)
        return f"{spec.name}-imagenet|{file_id(where) if where else 'download'}"

    def outputs(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(n, H, W, 3) pixels 0..255 -> the network's (n, classes) probabilities (a sigmoid becomes
        two columns) and, with ``with_features``, the (n, d) features its head reads (else None)."""
        batch = np.asarray(pixels, dtype=np.float32)
        if batch.ndim == 3:
            batch = batch[None]
        raw = np.asarray(self.forward(batch), dtype=np.float64)
        features = None
        if self.with_features:
            width = 1 if self.binary else self.num_classes
            features, raw = raw[:, :-width], raw[:, -width:]
        if self.binary:
            p = raw.reshape(-1)
            return np.stack([1 - p, p], axis=1), features
        return raw, features

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """The network's own (uncalibrated) probabilities of ``outputs``."""
        return self.outputs(pixels)[0]

    @property
    def calibrated(self) -> bool:
        return self.trust is not None


def feature_model(model):
    """``model`` with two outputs: the features its head reads, and its own output. A run's model
    ends in its head (a nested model after the pooling, or one Dense layer); ValueError otherwise."""
    import keras

    last = model.layers[-1]
    features = model.layers[-2].output if isinstance(last, keras.Model) else last.input
    head_input = last.input_shape if isinstance(last, keras.Model) else features.shape
    if isinstance(head_input, list) or tuple(features.shape[1:]) != tuple(head_input[1:]):
        raise ValueError(f"cannot tell the features {model.name}'s head reads")
    return keras.Model(model.inputs, [features, model.output])


# ---------------------------------------------------------------- loading

_MODELS: "OrderedDict[tuple, Any]" = OrderedDict()
_MODELS_LOCK = threading.Lock()


def _file_key(path: Path) -> tuple[str, int, int]:
    try:
        st = path.stat()
    except OSError as exc:
        raise RunError(f"Model file not found: {path}. Is the run finished?") from exc
    return str(path.resolve()), st.st_mtime_ns, st.st_size


def load_model_file(path: str | os.PathLike, verify: bool = False):
    """``keras.saving.load_model(path, safe_mode=True)``, cached by path + mtime + size.

    A file replaced on disk (a rerun) has a new mtime and is loaded again. With
    ``verify`` the file must first match its integrity record (``core.runs.models``:
    size + sha256 written at training), so a truncated or altered run model is
    reported, not loaded.
    """
    import keras

    from core.nets import layers  # noqa: F401  (registers ChannelAffine for safe_mode loading; lazy: starts TensorFlow)

    key = _file_key(Path(path))
    with _MODELS_LOCK:
        if key in _MODELS:
            _MODELS.move_to_end(key)
            return _MODELS[key]
    if verify:
        verify_record(Path(path))
    try:
        model = keras.saving.load_model(str(path), safe_mode=True, compile=False)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise RunError(f"The model file {path} cannot be loaded: {exc}") from exc
    with _MODELS_LOCK:
        _MODELS[key] = model
        while len(_MODELS) > _CACHE_SIZE:
            _MODELS.popitem(last=False)
    return model


def _input_size(model) -> int:
    shape = model.input_shape
    if isinstance(shape, list):
        shape = shape[0]
    _, height, width, channels = shape
    if not height or not width or height != width or channels != 3:
        raise TransferLabError(f"This model expects inputs of shape {shape}; the classifier needs square RGB.")
    return int(height)


def run_classes(run, num_outputs: int) -> list[str]:
    """Class names of a run: metrics.json, else the dataset's class folders, else class_0..."""
    metrics = run.metrics() or {}
    classes = metrics.get("classes")
    k = 2 if num_outputs == 1 else num_outputs
    if isinstance(classes, list) and len(classes) == k:
        return [str(c) for c in classes]
    return [f"class_{i}" for i in range(k)]


def load_run(run, with_features: bool = False) -> Predictor:
    """The predictor of a finished run (its ``model.keras``, checked against its integrity record),
    with its calibration and feature statistics when it has them."""
    path = Path(run.model_path)
    if not path.is_file():
        raise RunError(f"Run '{run.name}' has no saved model yet (it is not finished, or it failed).")
    model = load_model_file(path, verify=True)
    size = _input_size(model)
    classes = run_classes(run, int(model.output.shape[-1]))
    cfg = run.config
    trust = run_trust.load(run.dir)
    return Predictor(model, size, classes, name=f"{run.name} ({cfg.get('strategy', '?')}, {cfg.get('backbone', '?')})",
                     kind="run", source=str(path), run_id=run.id, weights=str(cfg.get("weights", "")), trust=trust,
                     with_features=with_features or bool(trust is not None and trust.ood is not None))


class Int8Forward:
    """An int8 OpenVINO IR export (``core.serve.quantize``) as a predictor's forward pass."""

    engine, precision, label = "openvino", "int8", "OpenVINO int8 (NNCF)"

    def __init__(self, path: str | os.PathLike):
        from core.serve.export import OpenVINORunner  # lazy: loads TensorFlow and OpenVINO

        self.runner = OpenVINORunner(path)

    def prepare(self) -> None:
        pass

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return np.asarray(self.runner(pixels), dtype=np.float32)


def int8_predictor(predictor: Predictor, artifact: str | os.PathLike) -> Predictor:
    """A copy of ``predictor`` that runs the int8 export instead of the float model (the caller checks
    its measured parity first). Its one output carries no features: no unlike-data check while it serves."""
    from dataclasses import replace

    return replace(predictor, name=f"{predictor.name}, int8", with_features=False, _forward=Int8Forward(artifact),
                   _lock=threading.Lock())


def load_model_predictor(path: str | os.PathLike, classes: Sequence[str] | None = None, name: str = "") -> Predictor:
    """A predictor from any pixels-in ``.keras`` file (tests, notebooks)."""
    model = load_model_file(path)
    k = int(model.output.shape[-1])
    names = list(classes) if classes else [f"class_{i}" for i in range(2 if k == 1 else k)]
    return Predictor(model, _input_size(model), names, name=name or Path(path).name, kind="run", source=str(path))


def load_imagenet(backbone: str, weights: Any = "imagenet") -> Predictor:
    """A registry backbone with its ImageNet top; class names decoded offline."""
    spec = resolve(backbone)
    try:
        classes = imagenet_classes(spec)
    except WeightsUnavailable:
        if weights is not None:
            raise
        classes = [f"imagenet_{i}" for i in range(1000)]  # random weights predict nonsense anyway
    model, size = load_classifier(spec, weights=weights)
    label = "ImageNet" if weights == "imagenet" else ("random weights" if weights is None else "custom weights")
    return Predictor(model, size, classes, name=f"{spec.display_name} ({label})", kind="imagenet",
                     source=spec.name, weights="random" if weights is None else str(weights))


# ---------------------------------------------------------------- predicting

@dataclass
class Prediction:
    """The outcome for one photo: top-k or an error message (never both)."""

    name: str
    top: list[tuple[int, str, float]] = field(default_factory=list)  # (class index, label, probability)
    error: str = ""
    pixels: np.ndarray | None = field(default=None, repr=False)  # what the model saw (uint8, H x W x 3)
    probabilities: np.ndarray | None = field(default=None, repr=False)  # calibrated when the run is
    decode_ms: float = 0.0
    forward_ms: float = 0.0
    calibrated: bool = False
    not_sure: bool | None = None  # None: the run is not calibrated, so no threshold
    unlike_data: bool | None = None  # None: no feature statistics
    ood_score: float | None = None
    unusual: float | None = None  # share of the run's validation photos with a lower score
    closest: list[str] = field(default_factory=list)  # the two most probable classes ("not sure: A or B")

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def latency_ms(self) -> float:
        """Decode + resize + forward + label decoding for this photo."""
        return self.decode_ms + self.forward_ms

    @property
    def label(self) -> str:
        return self.top[0][1] if self.top else ""

    @property
    def index(self) -> int:
        return self.top[0][0] if self.top else -1

    @property
    def confidence(self) -> float:
        return self.top[0][2] if self.top else float("nan")

    @property
    def verdict(self) -> str:
        """What the page says first: the class, or "not sure: A or B"."""
        if not self.ok:
            return ""
        if self.not_sure:
            return "not sure: closest classes " + " or ".join(self.closest)
        return self.label


def top_k(probabilities: np.ndarray, classes: Sequence[str], k: int = DEFAULT_TOP_K) -> list[tuple[int, str, float]]:
    """The ``k`` most probable classes, highest first (ties: lower index first)."""
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    k = max(1, min(int(k), len(p)))
    order = np.argsort(-p, kind="stable")[:k]
    return [(int(i), str(classes[i]) if i < len(classes) else f"class_{i}", float(p[i])) for i in order]


def _as_source(source: Any) -> Source:
    """Uploaded files (``UploadedFile``, file objects) become bytes; paths stay paths."""
    if isinstance(source, (bytes, bytearray, str, os.PathLike)):
        return source
    if hasattr(source, "getvalue"):
        return source.getvalue()
    if hasattr(source, "read"):
        return source.read()
    raise BadImage(f"cannot read an image from a {type(source).__name__}")


def decode(source: Any, size: int) -> np.ndarray:
    """The model's pixels for one photo (the training path's ``load_rgb``); ``BadImage`` if unusable."""
    try:
        return load_rgb(_as_source(source), (size, size))
    except BadImage:
        raise
    except MemoryError as exc:
        raise BadImage("image too large to decode in memory") from exc
    except Exception as exc:  # noqa: BLE001  any decoder failure is this file's problem, not the app's
        raise BadImage(f"cannot decode this image ({type(exc).__name__}: {exc})") from exc


def judge(predictor: Predictor, results: Sequence[Prediction], probs: np.ndarray, features: np.ndarray | None,
          k: int = DEFAULT_TOP_K, threshold: float | None = None, ood_threshold: float | None = None) -> None:
    """Fill each result from the network's outputs: calibrated probabilities and top-k, "not sure"
    below the abstention ``threshold`` (default: the run's), "unlike the training data" above the
    feature-distance ``ood_threshold`` (default: the run's). An uncalibrated run keeps raw
    probabilities and leaves both flags None."""
    trust = predictor.trust
    shown = trust.calibration.apply(probs) if trust is not None else np.asarray(probs, np.float64)
    scores = trust.ood.scores(features) if trust is not None and trust.ood is not None and features is not None \
        else None
    for row, result in enumerate(results):
        result.probabilities = shown[row]
        result.top = top_k(shown[row], predictor.classes, k)
        result.closest = [label for _, label, _ in top_k(shown[row], predictor.classes, 2)]
        result.calibrated = trust is not None
        if trust is not None:
            limit = trust.abstention.threshold if threshold is None else threshold
            result.not_sure = bool(result.confidence < limit)
        if scores is not None:
            result.ood_score = float(scores[row])
            result.unusual = float(trust.ood.unusual_share(scores[row:row + 1])[0])
            result.unlike_data = bool(trust.ood.flags(scores[row:row + 1], ood_threshold)[0])


def apply_threshold(results: Sequence[Prediction], threshold: float) -> None:
    """Decide "not sure" again at a threshold the user picked (results of a calibrated run only)."""
    for r in results:
        if r.ok and r.calibrated:
            r.not_sure = bool(r.confidence < threshold)


def outputs_of_files(predictor: Predictor, paths: Sequence[str], batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """The head's features of image files (``with_features`` predictors), and which files decoded:
    ``(features of the decoded files, ok mask)``; memory is bounded by a batch of pixels."""
    ok = np.zeros(len(paths), bool)
    chunks: list[np.ndarray] = []
    batch: list[np.ndarray] = []

    def flush() -> None:
        if batch:
            chunks.append(predictor.outputs(np.stack(batch))[1])
            batch.clear()

    for i, path in enumerate(paths):
        try:
            batch.append(decode(path, predictor.input_size))
            ok[i] = True
        except BadImage:
            continue
        if len(batch) >= batch_size:
            flush()
    flush()
    return (np.concatenate(chunks) if chunks else np.zeros((0, 0))), ok


def classify(predictor: Predictor, source: Any, name: str = "", k: int = DEFAULT_TOP_K) -> Prediction:
    """Decode, resize, forward and decode labels for one photo, timed; errors become messages."""
    result = Prediction(name=name or _name_of(source))
    start = time.perf_counter()
    try:
        result.pixels = decode(source, predictor.input_size)
    except BadImage as exc:
        result.error = str(exc)
        return result
    mid = time.perf_counter()
    probs, features = predictor.outputs(result.pixels[None])
    judge(predictor, [result], probs, features, k)
    end = time.perf_counter()
    result.decode_ms, result.forward_ms = (mid - start) * 1e3, (end - mid) * 1e3
    return result


def classify_many(
    predictor: Predictor,
    items: Iterable[tuple[str, Any]],
    k: int = DEFAULT_TOP_K,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
    keep_pixels: bool = True,
) -> list[Prediction]:
    """Classify ``(name, source)`` items in batches; a bad file gets its message and the
    rest go on. ``progress(done, total)`` is called after each file is decoded or classified.
    Per-photo latency is its own decode time plus its share of the batch's forward pass."""
    items = list(items)
    total = len(items)
    results = [Prediction(name=name) for name, _ in items]
    done = 0
    pending: list[int] = []

    def flush() -> None:
        nonlocal done
        if not pending:
            return
        batch = np.stack([results[i].pixels for i in pending])
        start = time.perf_counter()
        probs, features = predictor.outputs(batch)
        judge(predictor, [results[i] for i in pending], probs, features, k)
        share = (time.perf_counter() - start) * 1e3 / len(pending)
        for i in pending:
            results[i].forward_ms = share
            if not keep_pixels:
                results[i].pixels = None
        done += len(pending)
        pending.clear()
        if progress:
            progress(done, total)

    for i, (_, source) in enumerate(items):
        start = time.perf_counter()
        try:
            results[i].pixels = decode(source, predictor.input_size)
        except BadImage as exc:
            results[i].error = str(exc)
            done += 1
            if progress:
                progress(done, total)
            continue
        results[i].decode_ms = (time.perf_counter() - start) * 1e3
        pending.append(i)
        if len(pending) >= batch_size:
            flush()
    flush()
    return results


def results_frame(results: Sequence[Prediction], k: int = DEFAULT_TOP_K) -> pd.DataFrame:
    """One row per photo: file, status, top-1 label / index / probability (calibrated when the run
    is), the top ``k`` as "label (p); ..." in ``top_k``, latency, error; then the answer ("not sure:
    ..." below the threshold), the two flags (empty for a run without calibration) and the share of
    validation photos less unusual."""
    rows = []
    for r in results:
        rows.append({
            "file": r.name,
            "status": "ok" if r.ok else "error",
            "top1": r.label,
            "top1_index": r.index if r.ok else None,
            "probability": r.confidence if r.ok else None,
            "top_k": "; ".join(f"{label} ({p:.3f})" for _, label, p in r.top[:k]),
            "latency_ms": round(r.latency_ms, 2) if r.ok else None,
            "error": r.error,
            "answer": r.verdict,
            "not_sure": r.not_sure,
            "unlike_data": r.unlike_data,
            "unusual": r.unusual,
        })
    columns = ["file", "status", "top1", "top1_index", "probability", "top_k", "latency_ms", "error", "answer",
               "not_sure", "unlike_data", "unusual"]
    return pd.DataFrame(rows, columns=columns)


def results_csv(results: Sequence[Prediction], k: int = DEFAULT_TOP_K) -> bytes:
    buf = io.StringIO()
    results_frame(results, k).to_csv(buf, index=False)
    return buf.getvalue().encode("utf-8")


def display_image(source: Any, max_side: int = 640) -> np.ndarray:
    """The photo for display (EXIF applied, first frame, RGB), at most ``max_side`` px."""
    img = open_rgb(_as_source(source), min_side=max_side)
    img.thumbnail((max_side, max_side))
    return np.asarray(img, dtype=np.uint8)


def _name_of(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name
    return str(getattr(source, "name", "") or "photo")


# ---------------------------------------------------------------- latency

@dataclass
class Latency:
    p50_ms: float
    p95_ms: float
    mean_ms: float
    repeats: int
    samples_ms: list[float]


def measure_latency(predictor: Predictor, data: bytes, repeats: int = 20, warmup: int = 2) -> Latency:
    """Warm latency of one uploaded photo end to end: decode + resize + forward + labels."""
    for _ in range(max(1, warmup)):
        classify(predictor, data)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = classify(predictor, data)
        samples.append((time.perf_counter() - start) * 1e3)
        if not result.ok:
            raise BadImage(result.error)
    arr = np.asarray(samples)
    return Latency(float(np.percentile(arr, 50)), float(np.percentile(arr, 95)), float(arr.mean()),
                   repeats, [float(s) for s in samples])
