"""int8 that keeps its accuracy: post-training quantization of the OpenVINO IR with NNCF, calibrated
on training photos, and measured against the float model on validation photos.

NNCF (``nncf.quantize``) inserts int8 quantize/dequantize pairs into the float IR with scales from
the activations of ``calibration`` photos (training photos: the validation ones stay unseen, so the
accuracy measured on them is honest). The report compares the int8 model with the float32 IR on
the same validation pixels: accuracy of each, per-class accuracy change, top-1 agreement, file
sizes, single-photo latency and batch throughput on this CPU (the two measured alternately, so a
shared machine's load weighs on both alike). The live classifier may serve the
int8 model only when ``parity_holds``: agreement >= 98 % and at most 1 point of accuracy lost.

The report is ``<stem>_int8_openvino.json`` beside the zip (numbers and fixed words only).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from core import atomic
from core.errors import BadImage, TransferLabError
from core.data.images import load_rgb

MIN_AGREEMENT = 0.98
MAX_ACCURACY_DROP = 0.01
CALIBRATION_PHOTOS = 300  # NNCF's default subset size


class QuantizeError(TransferLabError):
    """int8 quantization that could not be done; the message says why."""


def pixels_of(paths: Sequence[str | os.PathLike], size: int) -> tuple[np.ndarray, list[int]]:
    """float32 pixels of the files that decode (``load_rgb``, the training decoder) and their positions."""
    batch, kept = [], []
    for i, path in enumerate(paths):
        try:
            batch.append(load_rgb(path, (size, size)))
            kept.append(i)
        except BadImage:
            continue
    if not batch:
        raise QuantizeError("None of the photos given for int8 quantization could be read.")
    return np.stack(batch).astype(np.float32), kept


def quantize_ir(float_model: Any, calibration: np.ndarray) -> Any:
    """The int8 OpenVINO model of ``float_model`` (an ``openvino.Model``), calibrated on ``calibration`` pixels."""
    try:
        import nncf
    except ImportError as exc:
        raise QuantizeError("int8 quantization needs NNCF (pip install nncf).") from exc
    dataset = nncf.Dataset([calibration[i:i + 1] for i in range(len(calibration))])
    try:
        return nncf.quantize(float_model, dataset, subset_size=min(len(calibration), CALIBRATION_PHOTOS),
                             preset=nncf.QuantizationPreset.MIXED)
    except Exception as exc:  # noqa: BLE001  NNCF raises many types; the user needs the reason
        raise QuantizeError(f"NNCF quantization failed: {exc}") from exc


def save_ir_zip(model: Any, target: Path, stem: str) -> None:
    """``model`` as IR (``stem.xml`` + ``.bin``) in a zip at ``target``, written atomically."""
    import openvino as ov

    staging = Path(tempfile.mkdtemp(prefix=".tmp-int8-", dir=target.parent)) / target.stem
    try:
        staging.mkdir()
        ov.save_model(model, str(staging / f"{stem}.xml"), compress_to_fp16=False)
        with atomic.atomic_path(target) as tmp:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for path in sorted(staging.iterdir()):
                    zf.write(path, Path(staging.name) / path.name)
    finally:
        shutil.rmtree(staging.parent, ignore_errors=True)


def compiled(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """An OpenVINO model compiled for this CPU, as pixels -> outputs (float32 where not quantized)."""
    import openvino as ov

    net = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return lambda x: np.asarray(net(np.asarray(x, np.float32))[0], dtype=np.float64)


def as_probabilities(raw: np.ndarray) -> np.ndarray:
    """A model's outputs as one probability column per class (a sigmoid's one column becomes two)."""
    raw = np.asarray(raw, dtype=np.float64)
    if raw.ndim == 1 or raw.shape[-1] == 1:
        p = raw.reshape(-1)
        return np.stack([1 - p, p], axis=1)
    return raw


def _in_batches(run: Callable[[np.ndarray], np.ndarray], pixels: np.ndarray, batch: int = 16) -> np.ndarray:
    return np.concatenate([as_probabilities(run(pixels[i:i + batch])) for i in range(0, len(pixels), batch)])


def interleaved_speed(runners: Sequence[Callable[[np.ndarray], np.ndarray]], pixels: np.ndarray, repeats: int = 20,
                      batch: int = 16) -> list[dict]:
    """Single-photo latency (p50, p95, ms) and batch throughput (photos/s, median call) of each runner on
    this CPU, after a warm-up. The runners take turns call by call, so the load of a shared machine
    weighs on all of them alike and the figures compare."""
    one = pixels[:1]
    chunk = np.resize(pixels, (batch, *pixels.shape[1:])).astype(np.float32)
    for run in runners:
        run(one)
        run(chunk)
    single: list[list[float]] = [[] for _ in runners]
    batched: list[list[float]] = [[] for _ in runners]
    for i in range(repeats):
        for times, x, rounds in ((single, one, True), (batched, chunk, i % 4 == 0)):
            if not rounds:
                continue  # a batch call costs 16 photos: every fourth round is enough for its median
            for k, run in enumerate(runners):
                start = time.perf_counter()
                run(x)
                times[k].append(time.perf_counter() - start)
    return [{"p50_ms": float(np.percentile(single[k], 50) * 1e3), "p95_ms": float(np.percentile(single[k], 95) * 1e3),
             "photos_per_s": float(batch / np.median(batched[k]))} for k in range(len(runners))]


@dataclass
class Int8Report:
    """int8 against the float32 IR on the same validation pixels."""

    images: int
    float_accuracy: float
    int8_accuracy: float
    agreement: float
    per_class: list[dict]  # {"class", "images", "float", "int8", "change"}
    float_bytes: int
    int8_bytes: int
    float_speed: dict
    int8_speed: dict
    calibration_images: int

    @property
    def accuracy_drop(self) -> float:
        return self.float_accuracy - self.int8_accuracy

    @property
    def parity_holds(self) -> bool:
        return self.agreement >= MIN_AGREEMENT and self.accuracy_drop <= MAX_ACCURACY_DROP

    @property
    def speedup(self) -> float:
        return self.int8_speed["photos_per_s"] / max(self.float_speed["photos_per_s"], 1e-9)

    def to_dict(self) -> dict:
        return {"images": self.images, "float_accuracy": self.float_accuracy, "int8_accuracy": self.int8_accuracy,
                "agreement": self.agreement, "per_class": self.per_class, "float_bytes": self.float_bytes,
                "int8_bytes": self.int8_bytes, "float_speed": self.float_speed, "int8_speed": self.int8_speed,
                "calibration_images": self.calibration_images, "accuracy_drop": self.accuracy_drop,
                "speedup": self.speedup, "parity_holds": self.parity_holds}


def compare(float_run, int8_run, pixels: np.ndarray, labels: np.ndarray, classes: Sequence[str],
            float_bytes: int, int8_bytes: int, calibration_images: int, repeats: int = 20) -> Int8Report:
    """Accuracy, per-class change, agreement and speed of the two runners on ``pixels``."""
    labels = np.asarray(labels, dtype=np.int64)
    p_float, p_int8 = _in_batches(float_run, pixels), _in_batches(int8_run, pixels)
    top_f, top_q = p_float.argmax(1), p_int8.argmax(1)
    per_class = []
    for i, name in enumerate(classes):
        mask = labels == i
        if mask.any():
            f, q = float(np.mean(top_f[mask] == i)), float(np.mean(top_q[mask] == i))
            per_class.append({"class": str(name), "images": int(mask.sum()), "float": f, "int8": q, "change": q - f})
    return Int8Report(int(len(labels)), float(np.mean(top_f == labels)), float(np.mean(top_q == labels)),
                      float(np.mean(top_f == top_q)), per_class, int(float_bytes), int(int8_bytes),
                      *interleaved_speed([float_run, int8_run], pixels, repeats), int(calibration_images))


def export_int8(saved_model_dir: str | os.PathLike, out_dir: str | os.PathLike, calibration_paths: Sequence[Any],
                validation_paths: Sequence[Any], validation_labels: Sequence[int], classes: Sequence[str],
                size: int, stem: str = "model", repeats: int = 20) -> tuple[Path, Int8Report]:
    """Convert the SavedModel to a float IR, quantize it on ``calibration_paths`` (training photos), save
    ``stem_int8_openvino.zip`` and its report beside it, measured on the validation photos."""
    import openvino as ov

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    calibration, _ = pixels_of(list(calibration_paths)[:CALIBRATION_PHOTOS], size)
    pixels, kept = pixels_of(list(validation_paths), size)
    labels = np.asarray(validation_labels, dtype=np.int64)[kept]
    try:
        float_model = ov.convert_model(str(saved_model_dir))
    except Exception as exc:  # noqa: BLE001  the converter raises many types
        raise QuantizeError(f"OpenVINO could not convert the model for quantization: {exc}") from exc
    int8_model = quantize_ir(float_model, calibration)
    target = out / f"{stem}_int8_openvino.zip"
    save_ir_zip(int8_model, target, stem)
    float_zip = out / f".{stem}_float_for_int8.zip"
    save_ir_zip(float_model, float_zip, stem)
    float_bytes = float_zip.stat().st_size
    float_zip.unlink()
    report = compare(compiled(float_model), compiled(int8_model), pixels, labels, classes, float_bytes,
                     target.stat().st_size, len(calibration), repeats)
    atomic.write_json(report_path(target), report.to_dict())
    return target, report


def report_path(artifact: Path) -> Path:
    return artifact.with_suffix(".json")


def read_report(artifact: Path) -> dict | None:
    """The stored report of an int8 artifact, checked: numbers in range, or None."""
    data = atomic.read_json(report_path(artifact))
    if not isinstance(data, dict):
        return None
    fields = ("float_accuracy", "int8_accuracy", "agreement")
    if not all(isinstance(data.get(f), (int, float)) and 0 <= data[f] <= 1 for f in fields):
        return None
    if not isinstance(data.get("parity_holds"), bool):
        return None
    return data
