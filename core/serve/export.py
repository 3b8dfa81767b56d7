"""Export a pixels-in model as ``.keras``, a zipped SavedModel, TFLite, OpenVINO IR and ONNX,
and check that each export gives the same top-1 class as the Keras model on real images.

Every exported model keeps the backbone's preprocessing inside (it is a layer),
so a phone or server feeds it raw RGB 0..255 at the model's input size, exactly
like the Keras model: the parity check feeds all of them the same
``core.data.images.load_rgb`` pixels.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from core import atomic, layout
from core.train.callbacks import save_model_atomic
from core.errors import BadImage, TransferLabError
from core.serve.quantize import as_probabilities
from core.data.images import load_rgb
from core.data.dataset import scan_folder
from core.serve import quantize

FORMATS = {
    "keras": "Keras (.keras)",
    "savedmodel": "TensorFlow SavedModel (.zip)",
    "tflite": "TFLite, float32",
    "tflite_float16": "TFLite, float16 weights",
    "tflite_dynamic": "TFLite, dynamic-range int8 weights",
    "openvino": "OpenVINO IR (.zip)",
    "onnx": "ONNX (.onnx)",
}
INT8 = {"openvino_int8": "OpenVINO IR, int8 (NNCF, calibrated on training photos)"}  # needs photos: see Int8Data
LABELS = {**FORMATS, **INT8}
RUNTIMES = {  # what runs each format in deployment; the card measures it with the runner in brackets
    "keras": "TensorFlow / Keras", "savedmodel": "TF Serving, TensorFlow", "tflite": "LiteRT (TFLite)",
    "tflite_float16": "LiteRT (TFLite)", "tflite_dynamic": "LiteRT (TFLite)", "openvino": "OpenVINO Runtime",
    "onnx": "ONNX Runtime, OpenVINO (measured on OpenVINO)", "openvino_int8": "OpenVINO Runtime",
}
TFLITE_QUANTIZATION = {"tflite": None, "tflite_float16": "float16", "tflite_dynamic": "dynamic"}
FROM_SAVEDMODEL = {"savedmodel", "openvino", *TFLITE_QUANTIZATION}  # converted from the inference SavedModel


class ExportError(TransferLabError):
    """An export that failed; the message says which format and why."""


@dataclass
class Artifact:
    """One exported file."""

    format: str
    path: Path
    seconds: float

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size

    @property
    def file_name(self) -> str:
        return self.path.name

    @property
    def label(self) -> str:
        return LABELS.get(self.format, self.format)


@dataclass
class Int8Data:
    """Photos for the int8 export: training photos to calibrate on, labelled validation photos to measure on."""

    calibration: Sequence[Any]
    validation: Sequence[Any]
    labels: Sequence[int]
    classes: Sequence[str]


@dataclass
class ExportReport:
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    parity: pd.DataFrame | None = None
    int8: Any = None  # core.serve.quantize.Int8Report of the int8 export

    def sizes(self) -> pd.DataFrame:
        rows = [{"format": a.label, "file": a.file_name, "size (MB)": a.size_bytes / 1e6,
                 "export seconds": a.seconds} for a in self.artifacts.values()]
        return pd.DataFrame(rows, columns=["format", "file", "size (MB)", "export seconds"])


def _atomic_dir_zip(folder: Path, target: Path) -> None:
    with atomic.atomic_path(target) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    zf.write(path, Path(folder.name) / path.relative_to(folder))


def export_keras(model: Any, out_dir: str | os.PathLike, stem: str = "model") -> Artifact:
    """``model.save`` to ``stem.keras`` (written to a temp name, then renamed)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{stem}.keras"
    start = time.perf_counter()
    try:
        save_model_atomic(model, target)
    except (OSError, ValueError, TypeError) as exc:
        raise ExportError(f"Saving as .keras failed: {exc}") from exc
    return Artifact("keras", target, time.perf_counter() - start)


def _export_inference_savedmodel(model: Any, path: Path) -> None:
    """A SavedModel whose ``serve`` (and ``serving_default``) signature calls the model with
    ``training=False``. Plain ``model.export`` traces ``model(x)`` with no training flag, and
    Keras' random augmentation layers default to ``training=True``: a run trained with
    augmentation would then flip, rotate and zoom every photo at serving time (and the
    random ops would not convert to TFLite)."""
    import keras
    import tensorflow as tf

    shape = model.input_shape
    if isinstance(shape, list):
        raise ExportError("Export needs a model with one image input.")
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serve", lambda pixels: model(pixels, training=False),
        input_signature=[tf.TensorSpec((None, *shape[1:]), tf.float32, name="pixels")],
    )
    archive.write_out(str(path), verbose=False)


def export_savedmodel(model: Any, out_dir: str | os.PathLike, stem: str = "model") -> tuple[Artifact, Path]:
    """The model as a SavedModel (``serve``: float32 pixels -> probabilities, inference mode) zipped as
    ``stem_savedmodel.zip``; returns the artifact and the unzipped folder (for TFLite)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    folder = out / f"{stem}_savedmodel"
    staging = Path(tempfile.mkdtemp(prefix=".tmp-sm-", dir=out)) / folder.name
    start = time.perf_counter()
    try:
        _export_inference_savedmodel(model, staging)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    except (OSError, ValueError, TypeError, RuntimeError) as exc:
        raise ExportError(f"Exporting the SavedModel failed: {exc}") from exc
    finally:
        shutil.rmtree(staging.parent, ignore_errors=True)
    target = out / f"{stem}_savedmodel.zip"
    _atomic_dir_zip(folder, target)
    return Artifact("savedmodel", target, time.perf_counter() - start), folder


def export_tflite(saved_model_dir: str | os.PathLike, out_dir: str | os.PathLike, stem: str = "model",
                  quantization: str | None = None) -> Artifact:
    """Convert a SavedModel to TFLite: ``quantization`` None (float32), "float16"
    (weights stored as float16) or "dynamic" (dynamic-range: int8 weights, float activations)."""
    import tensorflow as tf

    if quantization not in (None, "float16", "dynamic"):
        raise ExportError(f"Unknown TFLite quantization {quantization!r}; use float16 or dynamic.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    suffix = {None: "", "float16": "_float16", "dynamic": "_dynamic"}[quantization]
    target = out / f"{stem}{suffix}.tflite"
    start = time.perf_counter()
    try:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
        if quantization:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        blob = converter.convert()
    except Exception as exc:  # noqa: BLE001  the converter raises many types; the user needs the reason
        raise ExportError(f"TFLite conversion ({quantization or 'float32'}) failed: {exc}") from exc
    atomic.write_bytes(target, blob)
    return Artifact(TFLITE_KEY[quantization], target, time.perf_counter() - start)


TFLITE_KEY = {v: k for k, v in TFLITE_QUANTIZATION.items()}


def export_openvino(saved_model_dir: str | os.PathLike, out_dir: str | os.PathLike,
                    stem: str = "model") -> Artifact:
    """The SavedModel through ``openvino.convert_model`` as IR, float32 weights (``compress_to_fp16``
    would make it a quantized export), zipped as ``stem_openvino.zip`` holding ``stem_openvino/stem.xml``
    and ``.bin``. Not Keras' ``export(format="openvino")``: it traces the model without
    ``training=False``, so augmentation layers stay on and their random ops do not convert, and on
    an inference-mode wrapper it leaves the augmentation's unused tensors as extra outputs."""
    try:
        import openvino as ov
    except ImportError as exc:
        raise ExportError("The OpenVINO IR export needs OpenVINO (pip install openvino).") from exc
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{stem}_openvino.zip"
    staging = Path(tempfile.mkdtemp(prefix=".tmp-ov-", dir=out)) / f"{stem}_openvino"
    start = time.perf_counter()
    try:
        staging.mkdir()
        ov.save_model(ov.convert_model(str(saved_model_dir)), str(staging / f"{stem}.xml"), compress_to_fp16=False)
        _atomic_dir_zip(staging, target)
    except Exception as exc:  # noqa: BLE001  the converter raises many types; the user needs the reason
        raise ExportError(f"OpenVINO IR conversion failed: {exc}") from exc
    finally:
        shutil.rmtree(staging.parent, ignore_errors=True)
    return Artifact("openvino", target, time.perf_counter() - start)


def export_onnx(model: Any, out_dir: str | os.PathLike, stem: str = "model") -> Artifact:
    """Keras' own ``export(format="onnx")`` (tf2onnx under the TensorFlow backend) to ``stem.onnx``,
    of the model wrapped with ``training=False``: the plain export traces augmentation layers in
    training mode, random ops ONNX lacks."""
    import keras
    import tensorflow as tf

    shape = model.input_shape
    if isinstance(shape, list):
        raise ExportError("Export needs a model with one image input.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{stem}.onnx"
    start = time.perf_counter()
    try:
        pixels = keras.Input(shape[1:], name="pixels")
        inference = keras.Model(pixels, model(pixels, training=False))
        with atomic.atomic_path(target) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras' numpy 2 patch of tf2onnx warns about np.object
            inference.export(str(tmp), format="onnx", verbose=False,
                             input_signature=[tf.TensorSpec((None, *shape[1:]), tf.float32, name="pixels")])
    except Exception as exc:  # noqa: BLE001  tf2onnx raises many types (ImportError when not installed)
        raise ExportError(f"ONNX export failed: {exc}") from exc
    return Artifact("onnx", target, time.perf_counter() - start)


# ---------------------------------------------------------------- running exports

class TFLiteRunner:
    """Runs a ``.tflite`` file one image at a time (the way a phone would)."""

    def __init__(self, path: str | os.PathLike):
        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
            self.interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=2)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        out = []
        for image in np.asarray(pixels, np.float32).reshape((-1, *self.input["shape"][1:])):
            self.interpreter.set_tensor(self.input["index"], image[None].astype(self.input["dtype"]))
            self.interpreter.invoke()
            out.append(np.array(self.interpreter.get_tensor(self.output["index"])[0], dtype=np.float64))
        return np.stack(out)


class SavedModelRunner:
    def __init__(self, folder: str | os.PathLike):
        import tensorflow as tf

        self.loaded = tf.saved_model.load(str(folder))
        self.fn = self.loaded.signatures["serving_default"]

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        out = self.fn(tf.convert_to_tensor(np.asarray(pixels, np.float32)))
        return np.asarray(next(iter(out.values())), dtype=np.float64)


class OpenVINORunner:
    """Runs an OpenVINO IR zip (read from the zip, as downloaded) or an ``.onnx`` file on OpenVINO's
    CPU plugin at float32: on a bf16 CPU its default precision would blur what the export changed."""

    def __init__(self, path: str | os.PathLike):
        import openvino as ov

        core = ov.Core()
        model: Any = str(path)
        if Path(path).suffix == ".zip":
            with zipfile.ZipFile(path) as zf:
                xml = next(n for n in zf.namelist() if n.endswith(".xml"))
                weights = np.frombuffer(zf.read(xml[:-4] + ".bin"), np.uint8)
                model = core.read_model(zf.read(xml), ov.Tensor(weights))
        self.compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return np.asarray(self.compiled(np.asarray(pixels, np.float32))[0], dtype=np.float64)


def runner_for(artifact: Artifact, saved_model_dir: Path | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A callable (n, H, W, 3) pixels -> raw model outputs, for any exported format."""
    if artifact.format == "keras":
        import keras

        from core.nets import layers  # noqa: F401  (registers ChannelAffine; lazy: starts TensorFlow)

        model = keras.saving.load_model(str(artifact.path), safe_mode=True, compile=False)
        return lambda x: np.asarray(model(np.asarray(x, np.float32), training=False), dtype=np.float64)
    if artifact.format == "savedmodel":
        folder = saved_model_dir
        if folder is None or not folder.is_dir():
            folder = Path(tempfile.mkdtemp(prefix="tl-sm-"))
            with zipfile.ZipFile(artifact.path) as zf:
                zf.extractall(folder)
            folder = next(p for p in folder.iterdir() if p.is_dir())
        return SavedModelRunner(folder)
    if artifact.format in ("openvino", "onnx", *INT8):
        return OpenVINORunner(artifact.path)
    return TFLiteRunner(artifact.path)


def _top1(raw: np.ndarray) -> np.ndarray:
    raw = np.asarray(raw, dtype=np.float64)
    if raw.ndim == 1 or raw.shape[-1] == 1:
        return (raw.reshape(-1) > 0.5).astype(int)
    return raw.argmax(axis=-1)


def parity_check(model: Any, artifacts: dict[str, Artifact], images: Sequence[Any],
                 classes: Sequence[str], saved_model_dir: Path | None = None,
                 errors: dict[str, str] | None = None) -> pd.DataFrame:
    """Top-1 of each export vs the Keras model on ``images`` (paths, or ``(name, bytes)``
    pairs), all decoded with ``load_rgb``, the training pipeline's decoder.

    One row per image: the Keras top-1, each format's top-1, whether all agree, and
    the largest absolute probability difference from Keras. An export that does not load or
    run (tf2onnx, for one, writes ops it cannot convert and says so only in its log) is left
    out and named in ``errors``, so the others are still checked; without ``errors`` it raises.
    """
    size = int(model.input_shape[1])
    names, batch, bad = [], [], []
    for item in images:
        name, source = item if isinstance(item, tuple) else (f"{Path(item).parent.name}/{Path(item).name}", item)
        try:
            batch.append(load_rgb(source, (size, size)))
            names.append(str(name))
        except BadImage as exc:
            bad.append((str(name), str(exc)))
    if not batch:
        raise ExportError("No usable image for the parity check.")
    pixels = np.stack(batch).astype(np.float32)
    keras_raw = np.asarray(model(pixels, training=False), dtype=np.float64)
    keras_top, keras_p = _top1(keras_raw), as_probabilities(keras_raw)

    def label(i: int) -> str:
        return str(classes[i]) if i < len(classes) else f"class_{i}"

    frame = pd.DataFrame({"image": names, "keras": [label(i) for i in keras_top]})
    agree = np.ones(len(names), bool)
    for key, artifact in artifacts.items():
        try:
            raw = runner_for(artifact, saved_model_dir)(pixels)
        except Exception as exc:  # noqa: BLE001  each runtime raises its own types; the user needs the reason
            message = f"exported, but it did not run for the parity check: {exc}"
            if errors is None:
                raise ExportError(f"{artifact.label}: {message}") from exc
            errors[key] = message
            continue
        top = _top1(raw)
        frame[key] = [label(i) for i in top]
        frame[f"{key} max |Δp|"] = np.abs(as_probabilities(raw) - keras_p).max(axis=1)
        agree &= top == keras_top
    frame["all agree"] = agree
    for name, reason in bad:
        frame.loc[len(frame)] = {"image": name, "keras": f"skipped: {reason}", "all agree": None}
    return frame


def export_all(model: Any, out_dir: str | os.PathLike, formats: Sequence[str] = tuple(FORMATS),
               parity_images: Sequence[Any] = (), classes: Sequence[str] = (),
               stem: str = "model", progress: Callable[[str], None] | None = None,
               int8: Int8Data | None = None) -> ExportReport:
    """Export ``model`` in ``formats`` into ``out_dir`` and check parity on ``parity_images``.

    ``openvino_int8`` in ``formats`` needs ``int8`` (the photos to calibrate and measure on).
    A format that fails is reported in ``errors``; the others still export.
    """
    report = ExportReport()
    out = Path(out_dir)
    saved_dir: Path | None = None
    note = progress or (lambda _msg: None)
    wanted = [f for f in LABELS if f in formats]
    unknown = set(formats) - set(LABELS)
    if unknown:
        raise ExportError(f"Unknown export format(s): {', '.join(sorted(unknown))}.")
    if "keras" in wanted:
        note("Saving .keras")
        try:
            report.artifacts["keras"] = export_keras(model, out, stem)
        except ExportError as exc:
            report.errors["keras"] = str(exc)
    if FROM_SAVEDMODEL.intersection(wanted) or "openvino_int8" in wanted:
        note("Exporting the SavedModel")
        try:
            artifact, saved_dir = export_savedmodel(model, out, stem)
            if "savedmodel" in wanted:
                report.artifacts["savedmodel"] = artifact
        except ExportError as exc:
            for f in wanted:
                if f in FROM_SAVEDMODEL or f in INT8:
                    report.errors[f] = str(exc)
    if saved_dir is not None:
        for key in (f for f in wanted if f in TFLITE_QUANTIZATION):
            note(f"Converting to {FORMATS[key]}")
            try:
                report.artifacts[key] = export_tflite(saved_dir, out, stem, TFLITE_QUANTIZATION[key])
            except ExportError as exc:
                report.errors[key] = str(exc)
    if saved_dir is not None and "openvino" in wanted:
        note(f"Converting to {FORMATS['openvino']}")
        try:
            report.artifacts["openvino"] = export_openvino(saved_dir, out, stem)
        except ExportError as exc:
            report.errors["openvino"] = str(exc)
    if saved_dir is not None and "openvino_int8" in wanted:
        note("Quantizing to int8 with NNCF and measuring it against float32")
        _export_int8(model, saved_dir, out, stem, int8, report)
    if "onnx" in wanted:
        note(f"Exporting {FORMATS['onnx']}")
        try:
            report.artifacts["onnx"] = export_onnx(model, out, stem)
        except ExportError as exc:
            report.errors["onnx"] = str(exc)
    if parity_images and report.artifacts:
        note("Checking top-1 parity")
        try:
            report.parity = parity_check(model, report.artifacts, parity_images, classes, saved_dir, report.errors)
        except ExportError as exc:  # the files are still good to download
            report.errors["parity"] = str(exc)
    return report


def _export_int8(model: Any, saved_dir: Path, out: Path, stem: str, int8: Int8Data | None,
                 report: ExportReport) -> None:

    if int8 is None or not int8.calibration or not int8.validation:
        report.errors["openvino_int8"] = ("int8 needs training photos to calibrate on and labelled validation photos "
                                          "to measure on (a run's dataset gives both).")
        return
    start = time.perf_counter()
    try:
        path, measured = quantize.export_int8(saved_dir, out, int8.calibration, int8.validation, int8.labels,
                                              int8.classes, int(model.input_shape[1]), stem)
    except quantize.QuantizeError as exc:
        report.errors["openvino_int8"] = str(exc)
        return
    report.artifacts["openvino_int8"] = Artifact("openvino_int8", path, time.perf_counter() - start)
    report.int8 = measured


def validation_images(run, n: int = 8) -> list[str]:
    """Up to ``n`` validation images of a run, both classes mixed: from its predictions
    (the files it was evaluated on), else a scan of its dataset's validation split."""
    paths: list[str] = []
    frame = run.predictions()
    if frame is not None and "path" in frame.columns:
        if "true" in frame.columns:  # interleave the classes so a few images cover them all
            groups = [list(g["path"]) for _, g in frame.groupby("true", sort=True)]
            mixed = [p for row in _zip_longest(*groups) for p in row if p is not None]
        else:
            mixed = list(frame["path"])
        paths = [p for p in mixed if isinstance(p, str) and os.path.isfile(p)]
    if not paths and run.config.get("dataset"):
        try:
            ds = scan_folder(run.config["dataset"])
            groups = [[r.path for r in ds.split("validation") if r.label == c] for c in ds.classes]
            paths = [p for row in _zip_longest(*groups) for p in row if p is not None]
        except TransferLabError:
            paths = []
    return paths[:n]


def run_int8_data(run, validation: int = 500) -> Int8Data | None:
    """A run's photos for the int8 export: up to ``quantize.CALIBRATION_PHOTOS`` training photos (seeded)
    to calibrate on, and up to ``validation`` of its validation photos (both classes mixed) with their
    labels to measure on; None when the run's predictions or dataset cannot be read."""
    frame = run.predictions()
    classes = (run.metrics() or {}).get("classes")
    if frame is None or not {"path", "true"} <= set(frame.columns) or not isinstance(classes, list):
        return None
    index = {str(c): i for i, c in enumerate(classes)}
    frame = frame[frame["true"].astype(str).isin(index)].sample(frac=1.0, random_state=0).head(validation)
    held_out = set(frame["path"])
    try:
        ds = scan_folder(run.config["dataset"], val_fraction=float(run.config.get("val_fraction", 0.2)),
                         seed=int(run.config.get("seed", 0)))
    except (TransferLabError, KeyError, TypeError, ValueError):
        return None
    train = [p for p in ds.paths("train") if p not in held_out]
    order = np.random.default_rng(0).permutation(len(train))[:quantize.CALIBRATION_PHOTOS]
    return Int8Data([train[i] for i in sorted(order)], list(frame["path"]),
                    [index[str(t)] for t in frame["true"]], [str(c) for c in classes])


def deployment_card(model: Any, report: ExportReport, photos: Sequence[Any], labels: Sequence[int] | None,
                    saved_model_dir: Path | None = None, repeats: int = 20) -> pd.DataFrame:
    """Each exported format on this machine: size, single-photo latency (p50, p95), throughput (the formats
    timed in turns, see ``quantize.interleaved_speed``), accuracy on the labelled ``photos`` (when
    ``labels``), top-1 agreement with the Keras model, and what runs it."""

    size = int(model.input_shape[1])
    pixels, kept = quantize.pixels_of(list(photos), size)
    truth = np.asarray(labels, dtype=np.int64)[kept] if labels is not None else None
    keras_top = as_probabilities(np.asarray(model.predict(pixels, batch_size=16, verbose=0))).argmax(1)
    measured = []
    for key, artifact in report.artifacts.items():
        try:
            run = runner_for(artifact, saved_model_dir)
            top = np.concatenate([as_probabilities(run(pixels[i:i + 16])) for i in range(0, len(pixels), 16)]).argmax(1)
        except Exception as exc:  # noqa: BLE001  each runtime raises its own types; the card says which failed
            report.errors[key] = f"exported, but it did not run for the deployment card: {exc}"
            continue
        measured.append((key, artifact, run, top))
    speeds = quantize.interleaved_speed([run for _, _, run, _ in measured], pixels, repeats) if measured else []
    rows = []
    for (key, artifact, _, top), speed in zip(measured, speeds):
        rows.append({"format": artifact.label, "size (MB)": artifact.size_bytes / 1e6, "p50 (ms)": speed["p50_ms"],
                     "p95 (ms)": speed["p95_ms"], "photos/s (batch 16)": speed["photos_per_s"],
                     "accuracy": float(np.mean(top == truth)) if truth is not None else None,
                     "agreement with Keras": float(np.mean(top == keras_top)), "runs on": RUNTIMES.get(key, ""),
                     "photos": int(len(pixels))})
    return pd.DataFrame(rows, columns=["format", "size (MB)", "p50 (ms)", "p95 (ms)", "photos/s (batch 16)", "accuracy",
                                       "agreement with Keras", "runs on", "photos"])


def _zip_longest(*groups):
    from itertools import zip_longest

    return zip_longest(*groups)


def export_folder(key: str) -> Path:
    """Where the exports of one model go: ``$TRANSFER_LAB_HOME/exports/<key>``."""
    import re

    safe = "-".join(re.findall(r"[A-Za-z0-9_]+", key))[:80] or "model"
    folder = layout.workspace_dir("exports") / safe
    folder.mkdir(parents=True, exist_ok=True)
    return folder
