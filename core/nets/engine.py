"""The engine layer: every forward pass through frozen weights runs here.

``TRANSFER_LAB_ENGINE`` picks it: ``auto`` (default) runs OpenVINO on a CPU, at the
fastest precision the CPU has (bf16 where it has AVX512_BF16 or AMX, f32 otherwise),
and TensorFlow on a GPU or where OpenVINO is not installed; ``openvino`` and
``tensorflow`` force one. Anything that needs gradients (training, Grad-CAM) stays in
TensorFlow; ``FrozenForward`` only runs what was already a compiled TensorFlow batch
function, converted once to OpenVINO (``openvino.convert_model`` of its concrete
function, input ``[batch, size, size, 3]``).

The backends are a table (``BACKENDS``): each is declared once, as a ``Backend`` (name,
availability check, precisions, runner factory), and every other module asks the table
(``names()``, ``backend(name)``, ``Choice.reference``) instead of comparing engine names.
A new engine is one ``register(Backend(...))``: ``TRANSFER_LAB_ENGINE`` accepts its name,
``auto`` may pick it, and ``FrozenForward`` runs it behind the parity guard.

The parity guard: the first real batch (not a constant one such as a warm-up of
zeros) of a (network, size, pooling, engine, precision) on a machine runs through
both TensorFlow and the engine; cosine of the outputs (and top-1 agreement of an
ImageNet head or of class probabilities) decides. The verdict is kept under the
data directory (``engine/parity/``, written atomically), so later processes skip
the check, and a refused engine is never used for that network again: TensorFlow
takes over, with a one-line reason in ``FrozenForward.reason``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import platform
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from core import atomic, layout, settings
from core.errors import EngineError

ENGINE_ENV = settings.ENGINE_ENV
AUTO = "auto"  # the request that lets the table pick (the first available backend auto may use)
# Bump when the conversion or the guard's definition changes: verdicts and cached IR are rebuilt.
ENGINE_VERSION = 1
# Parity thresholds. Measured for EfficientNet-Lite0 bf16 on real photos: mean cosine 0.9993,
# worst row > 0.995; random-noise pixels (the hardest case) worst row 0.9946.
COSINE_WORST = 0.98
COSINE_MEAN = 0.995
AGREEMENT = 0.9
TIE = 0.02  # a top-1 "disagreement" inside this TF-probability margin of TF's top-1 is a tie

log = logging.getLogger(__name__)


Runner = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Backend:
    """One engine, declared once in the table.

    ``unavailable(auto)``: why it cannot run here (None: it can); ``auto`` True when ``auto``
    asks, which may refuse more (a GPU, where TensorFlow is the fast one). ``precision()``: the
    precision it runs at here and why, one of ``precisions`` (fastest first). ``factory(tf_fn,
    size, precision, ir_key)``: its batch function for a TensorFlow batch function; None for the
    reference (TensorFlow itself, which runs ``tf_fn``). ``auto``: whether ``auto`` may pick it."""

    name: str
    title: str  # as a person reads it: "OpenVINO"
    short: str  # a table header's: "OV"
    precisions: tuple[str, ...]
    unavailable: Callable[[bool], str | None]
    precision: Callable[[], tuple[str, str]]
    factory: Callable[..., Runner] | None = None
    auto: bool = True

    @property
    def reference(self) -> bool:
        """The engine every other one is checked against (its outputs are TensorFlow's own)."""
        return self.factory is None

    @property
    def is_exact(self) -> bool:
        """Whether its outputs are the reference's by construction (no parity check needed)."""
        return self.reference


@dataclass(frozen=True)
class Choice:
    """The engine a forward pass runs on, its precision, and why."""

    engine: str  # a backend's name: "openvino" | "tensorflow" | ...
    precision: str  # "bf16" | "f32"
    reason: str = ""

    @property
    def label(self) -> str:
        """``openvino bf16``: what cache keys, verdicts and status lines carry."""
        return f"{self.engine} {self.precision}"

    @property
    def reference(self) -> bool:
        """Whether this runs on the reference engine (TensorFlow): nothing to convert or check."""
        return is_reference(self.engine)


def is_reference(name: str) -> bool:
    """Whether engine ``name`` is the reference (TensorFlow); an engine not in the table is not."""
    b = BACKENDS.get(name)
    return b is not None and b.reference


def names() -> tuple[str, ...]:
    """Every request ``TRANSFER_LAB_ENGINE`` and ``--engine`` accept: ``auto`` and each backend."""
    return (AUTO, *BACKENDS)


def backends() -> list[Backend]:
    return list(BACKENDS.values())


def backend(name: str) -> Backend:
    """The backend called ``name``, or ``EngineError``."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise EngineError(f"{name!r} is not an engine; use one of {', '.join(names())}.") from None


def reference() -> Backend:
    """The reference backend (TensorFlow): what the guard compares against and falls back to."""
    return next(b for b in BACKENDS.values() if b.reference)


def reference_choice(reason: str = "") -> Choice:
    """The reference engine at its precision, with ``reason``."""
    ref = reference()
    return Choice(ref.name, ref.precisions[0], reason)


def register(b: Backend) -> Backend:
    """Add (or replace) backend ``b`` in the table: one entry is the whole of a new engine."""
    BACKENDS[b.name] = b
    _choose.cache_clear()
    return b


def unregister(name: str) -> None:
    if name in BACKENDS and not BACKENDS[name].reference:
        del BACKENDS[name]
        _choose.cache_clear()


def requested() -> str:
    value = settings.engine_request()
    if value not in names():
        raise EngineError(f"{ENGINE_ENV}={value!r} is not an engine; use one of {', '.join(names())}.")
    return value


@functools.lru_cache(maxsize=1)
def _ov_core():
    import openvino as ov

    return ov.Core()


def openvino_version() -> str | None:
    try:
        import openvino as ov
    except ImportError:
        return None
    return str(ov.__version__).split("-")[0]


def cpu_capabilities() -> list[str]:
    """OpenVINO's ``OPTIMIZATION_CAPABILITIES`` of this CPU (``BF16``, ``FP32``, ``INT8``...)."""
    try:
        return [str(c) for c in _ov_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
    except Exception:  # noqa: BLE001  no OpenVINO, or no CPU plugin: no capabilities
        return []


def cpu_precision() -> tuple[str, str]:
    """The fastest precision this CPU runs in OpenVINO and why: bf16 with native BF16
    (AVX512_BF16 or AMX), else f32."""
    if "BF16" in cpu_capabilities():
        return "bf16", "CPU has native bf16 (AVX512_BF16 or AMX)"
    return "f32", "CPU has no native bf16"


def has_gpu() -> bool:
    """A GPU TensorFlow would use. Asks TensorFlow when it is already imported; otherwise
    (the first page renders without TensorFlow) the presence of an NVIDIA device node."""
    tf = sys.modules.get("tensorflow")
    if tf is not None and hasattr(tf, "config"):
        try:
            return bool(tf.config.list_physical_devices("GPU"))
        except Exception:  # noqa: BLE001
            return False
    return any(Path("/dev").glob("nvidia[0-9]*"))


def choose(request: str | None = None) -> Choice:
    """The engine and precision ``request`` (default: ``TRANSFER_LAB_ENGINE``) resolves to here."""
    return _choose(request or requested(), tuple(BACKENDS.values()))


@functools.lru_cache(maxsize=16)
def _choose(request: str, table: tuple = ()) -> Choice:
    """``choose`` for one request and one state of the table (``table`` keys the cache)."""
    if request != AUTO and request not in BACKENDS:
        raise EngineError(f"{request!r} is not an engine; use one of {', '.join(names())}.")
    if request != AUTO:
        b = BACKENDS[request]
        if b.reference:
            return Choice(b.name, b.precisions[0], f"{ENGINE_ENV}={b.name}")
        why_not = b.unavailable(False)
        if why_not:
            return reference_choice(why_not)
        precision, why = b.precision()
        return Choice(b.name, precision, f"{ENGINE_ENV}={b.name}: {why}")
    first_reason = ""
    for b in BACKENDS.values():
        if b.reference or not b.auto:
            continue
        why_not = b.unavailable(True)
        if why_not:
            first_reason = first_reason or why_not
            continue
        precision, why = b.precision()
        return Choice(b.name, precision, f"{AUTO}: {why}")
    return reference_choice(first_reason or f"{AUTO}: no other engine is available")


def _openvino_unavailable(auto: bool = False) -> str | None:
    if openvino_version() is None:
        return "OpenVINO is not installed (pip install openvino)"
    if auto and has_gpu():
        return "auto: a GPU is present, TensorFlow runs on it"
    if "CPU" not in _available_devices():
        return "OpenVINO has no CPU device here"
    return None


def _openvino_precision() -> tuple[str, str]:
    precision, why = cpu_precision()
    return precision, f"{why}, OpenVINO {openvino_version()}"


def _available_devices() -> list[str]:
    try:
        return list(_ov_core().available_devices)
    except Exception:  # noqa: BLE001
        return []


def describe(request: str | None = None) -> str:
    """One line for the sidebar and the CLI: ``openvino bf16 · auto: CPU has native bf16 ...``,
    plus how many networks the parity guard refused on this machine."""
    try:
        c = choose(request)
    except EngineError as exc:
        return str(exc)
    line = f"{c.label} · {c.reason}" if c.reason else c.label
    refused = [v for v in verdicts() if not v.get("passed") and v.get("engine") == c.label]
    if refused:
        line += f"; parity guard refused it for {len(refused)} network(s), TensorFlow runs those"
    return line


def describe_for_users(request: str | None = None) -> str:
    """``describe`` for the app: a forced engine said as a server setting, not by its variable's name."""
    return describe(request).replace(f"{ENGINE_ENV}=", "set on the server: ")


# ---------------------------------------------------------------- parity verdicts

@functools.lru_cache(maxsize=1)
def machine_id() -> str:
    """What a verdict holds for: CPU model, OpenVINO and engine versions."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}|{'+'.join(cpu_capabilities())}|openvino {openvino_version()}|v{ENGINE_VERSION}"


def _verdict_path(network: str, size: int, pooling: str, choice: Choice) -> Path:
    raw = f"{network}|{size}|{pooling}|{choice.label}|{machine_id()}"
    return layout.cache("engine") / "parity" / (hashlib.sha256(raw.encode()).hexdigest()[:24] + ".json")


def read_verdict(network: str, size: int, pooling: str, choice: Choice) -> dict | None:
    v = atomic.read_json(_verdict_path(network, size, pooling, choice))
    return v if isinstance(v, dict) and "passed" in v else None


def verdicts() -> list[dict]:
    """Every verdict kept in this data directory."""
    try:
        folder = layout.cache("engine") / "parity"
    except OSError:
        return []
    out = []
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        v = atomic.read_json(p)
        if isinstance(v, dict) and "passed" in v:
            out.append(v)
    return out


def effective(network: str, size: int, pooling: str, choice: Choice | None = None) -> Choice:
    """The engine a network will actually run on: the chosen one, unless a kept verdict refused it."""
    choice = choice or choose()
    if choice.reference:
        return choice
    v = read_verdict(network, size, pooling, choice)
    if v is not None and not v["passed"]:
        return reference_choice(f"parity guard refused {choice.label}: {v.get('reason', '')}")
    return choice


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both_zero = (na < 1e-12) & (nb < 1e-12)
    cos = (a * b).sum(1) / np.maximum(na * nb, 1e-24)
    return np.where(both_zero, 1.0, cos)


def _two_columns(p: np.ndarray) -> np.ndarray:
    p = p.reshape(len(p), -1).astype(np.float64)
    return np.concatenate([1 - p, p], axis=1) if p.shape[1] == 1 else p


def _agreement(ref_scores: np.ndarray, cand_scores: np.ndarray, probabilities: bool) -> float:
    """Share of rows where both pick the same top-1, a near-tie in TF's own scores counting as agreement."""
    ref = _two_columns(ref_scores)
    cand = _two_columns(cand_scores)
    if not probabilities:  # logits -> probabilities, so the tie margin means the same everywhere
        ref = np.exp(ref - ref.max(1, keepdims=True))
        ref /= ref.sum(1, keepdims=True)
    rows = np.arange(len(ref))
    r_top, c_top = ref.argmax(1), cand.argmax(1)
    ok = (r_top == c_top) | (ref[rows, r_top] - ref[rows, c_top] <= TIE)
    return float(ok.mean())


def compare(reference: np.ndarray, candidate: np.ndarray, kind: str = "features",
            head: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[bool, str, dict]:
    """The guard's test of ``candidate`` (engine) against ``reference`` (TensorFlow) on one batch.

    ``kind``: ``features`` (cosine per row; with ``head``, also top-1 agreement of the
    ImageNet logits ``head(features)``) or ``probabilities`` (top-1 agreement and cosine).
    """
    reference = np.asarray(reference, np.float64)
    candidate = np.asarray(candidate, np.float64)
    metrics: dict[str, Any] = {"rows": int(len(reference))}
    if candidate.shape != reference.shape:
        return False, f"output shape {candidate.shape} differs from TensorFlow's {reference.shape}", metrics
    if not np.isfinite(candidate).all():
        return False, "non-finite outputs (NaN or inf)", metrics
    cos = _cosines(reference, candidate)
    metrics.update(cosine_mean=float(cos.mean()), cosine_worst=float(cos.min()))
    problems = []
    if cos.min() < COSINE_WORST:
        problems.append(f"worst cosine {cos.min():.4f} < {COSINE_WORST}")
    if cos.mean() < COSINE_MEAN:
        problems.append(f"mean cosine {cos.mean():.4f} < {COSINE_MEAN}")
    if kind == "probabilities":
        metrics["top1_agreement"] = _agreement(reference, candidate, True)
        metrics["max_abs_diff"] = float(np.abs(reference - candidate).max())
    elif head is not None:
        ref_logits = head(reference)
        if ref_logits is not None:
            metrics["top1_agreement"] = _agreement(ref_logits, head(candidate), False)
    if metrics.get("top1_agreement", 1.0) < AGREEMENT:
        problems.append(f"top-1 agreement {metrics['top1_agreement']:.2f} < {AGREEMENT}")
    return not problems, "; ".join(problems), metrics


# ---------------------------------------------------------------- OpenVINO

def _ir_dir(ir_key: str) -> Path:
    raw = f"{ir_key}|openvino {openvino_version()}|v{ENGINE_VERSION}"
    return layout.cache("engine") / "ir" / hashlib.sha256(raw.encode()).hexdigest()[:24]


def _convert(tf_fn, size: int, ir_key: str | None):
    """The OpenVINO model of ``tf_fn`` over ``[batch, size, size, 3]`` float32; kept as IR under
    the data directory when ``ir_key`` names stable weights, so a later process skips the trace."""
    import openvino as ov

    folder = _ir_dir(ir_key) if ir_key else None
    if folder is not None and (folder / "model.xml").is_file() and (folder / "model.bin").is_file():
        try:
            return _ov_core().read_model(str(folder / "model.xml"))
        except Exception:  # noqa: BLE001  a damaged IR is converted again
            pass
    import tensorflow as tf

    concrete = tf_fn.get_concrete_function(tf.TensorSpec([None, size, size, 3], tf.float32))
    model = ov.convert_model(concrete)
    if folder is not None:
        work = folder.with_name(f".{folder.name}.{time.time_ns()}.tmp")
        try:
            work.mkdir(parents=True)
            ov.save_model(model, str(work / "model.xml"), compress_to_fp16=False)
            if folder.exists():
                import shutil

                shutil.rmtree(work, ignore_errors=True)
            else:
                work.rename(folder)
        except OSError:
            import shutil

            shutil.rmtree(work, ignore_errors=True)  # a cache miss next time, not a failure now
    return model


def openvino_runner(tf_fn, size: int, precision: str, ir_key: str | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A batch function on OpenVINO's CPU plugin at ``precision`` (``bf16`` or ``f32``); one
    infer request per thread, so concurrent sessions do not share one."""
    model = _convert(tf_fn, size, ir_key)
    # No CPU pinning: on a machine shared with other processes (the app's own decoder threads, other
    # jobs) pinned threads wait for their core; measured on the 2-core CI machine under load,
    # EfficientNet-Lite0 bf16 batch 32: 82-119 img/s unpinned against 68-78 pinned.
    compiled = _ov_core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                       "ENABLE_CPU_PINNING": False})
    local = threading.local()

    def run(x: np.ndarray) -> np.ndarray:
        request = getattr(local, "request", None)
        if request is None:
            request = local.request = compiled.create_infer_request()
        request.infer({0: x})
        return np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True)

    return run


# ---------------------------------------------------------------- the table

def _openvino_factory(tf_fn, size: int, precision: str, ir_key: str | None = None) -> Runner:
    return openvino_runner(tf_fn, size, precision, ir_key)  # looked up per call: tests replace it


# Every engine, declared once; ``auto`` tries them in this order (the reference never: it is the fallback).
BACKENDS: dict[str, Backend] = {}
register(Backend(name="tensorflow", title="TensorFlow", short="TF", precisions=("f32",),
                 unavailable=lambda auto=False: None, precision=lambda: ("f32", "the reference")))
register(Backend(name="openvino", title="OpenVINO", short="OV", precisions=("bf16", "f32"),
                 unavailable=_openvino_unavailable, precision=_openvino_precision, factory=_openvino_factory))
TENSORFLOW = reference_choice()


# ---------------------------------------------------------------- the batch function

def _as_pixels(pixels) -> np.ndarray:
    x = pixels.numpy() if hasattr(pixels, "numpy") else pixels
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))


class FrozenForward:
    """A frozen network's batch function on the chosen engine, parity-guarded.

    ``tf_fn`` is the TensorFlow reference (a ``tf.function`` over pixel batches): it runs
    the batch when the engine is TensorFlow, when the guard refused the engine, and on the
    probe batch. ``network`` identifies the weights (name + weights id); ``kind`` is
    ``features`` or ``probabilities``; ``head`` maps pooled features to ImageNet logits
    for the guard's top-1 check. ``ir_key`` (stable weights only) lets the converted
    model be kept on disk. Calls return float32 numpy arrays.
    """

    def __init__(self, tf_fn, size: int, network: str, pooling: str, *, kind: str = "features",
                 head: Callable[[np.ndarray], np.ndarray] | None = None, choice: Choice | None = None,
                 ir_key: str | None = None,
                 runner_factory: Callable[..., Callable[[np.ndarray], np.ndarray]] | None = None):
        self.tf_fn, self.size, self.network, self.pooling = tf_fn, int(size), network, pooling
        self.kind, self.head, self.ir_key = kind, head, ir_key
        self.requested = choice or choose()
        self.choice = effective(network, self.size, pooling, self.requested)
        self.verdict: dict | None = None
        self._factory = runner_factory  # None: the chosen backend's own (``backend(name).factory``)
        self._runner: Callable[[np.ndarray], np.ndarray] | None = None
        self._verified = False
        self._lock = threading.Lock()
        if not self.choice.reference:
            self.verdict = read_verdict(network, self.size, pooling, self.choice)
            self._verified = bool(self.verdict and self.verdict["passed"])

    @property
    def engine(self) -> str:
        return self.choice.engine

    @property
    def precision(self) -> str:
        return self.choice.precision

    @property
    def label(self) -> str:
        return self.choice.label

    @property
    def reason(self) -> str:
        return self.choice.reason

    def _tf(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.tf_fn(x), dtype=np.float32)

    def _refuse(self, reason: str, metrics: dict | None = None, keep: bool = True) -> None:
        refused = self.choice
        self.choice = reference_choice(f"parity guard refused {refused.label}: {reason}")
        self._runner = None
        log.warning("%s on %s: %s; TensorFlow takes over", refused.label, self.network, reason)
        if keep:
            self._keep(refused, False, reason, metrics or {})

    def _keep(self, choice: Choice, passed: bool, reason: str, metrics: dict) -> None:
        self.verdict = {"network": self.network, "size": self.size, "pooling": self.pooling,
                        "engine": choice.label, "machine": machine_id(), "passed": passed, "reason": reason,
                        "metrics": metrics, "checked_at": time.time()}
        try:
            atomic.write_json(_verdict_path(self.network, self.size, self.pooling, choice), self.verdict)
        except OSError as exc:  # the verdict holds for this process; the next one checks again
            log.warning("could not keep the parity verdict: %s", exc)

    def _ensure_runner(self) -> None:
        if self._runner is None and not self.choice.reference:
            try:
                factory = self._factory or backend(self.choice.engine).factory
                self._runner = factory(self.tf_fn, self.size, self.choice.precision, self.ir_key)
            except Exception as exc:  # noqa: BLE001  conversion failure: TensorFlow runs it
                self._refuse(f"conversion failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})")

    def prepare(self) -> None:
        """Convert and compile now (a warm-up), so the first real call pays only the probe."""
        if self.choice.reference:
            return
        with self._lock:
            self._ensure_runner()
            if self._runner is not None:
                try:
                    self._runner(np.zeros((1, self.size, self.size, 3), np.float32))
                except Exception as exc:  # noqa: BLE001
                    self._refuse(f"inference failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})")

    def __call__(self, pixels) -> np.ndarray:
        x = _as_pixels(pixels)
        if self.choice.reference:
            return self._tf(x)
        with self._lock:
            self._ensure_runner()
            if self.choice.reference:
                return self._tf(x)
            if not self._verified:
                if len(x) == 0 or float(x.max()) == float(x.min()):
                    return self._tf(x)  # a warm-up or blank batch proves nothing: wait for real photos
                return self._probe(x)
            runner = self._runner
        return runner(x)

    def _probe(self, x: np.ndarray) -> np.ndarray:
        reference = self._tf(x)
        try:
            candidate = self._runner(x)
        except Exception as exc:  # noqa: BLE001
            self._refuse(f"inference failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})")
            return reference
        passed, reason, metrics = compare(reference, candidate, self.kind, self.head)
        if passed:
            self._verified = True
            self._keep(self.choice, True, "", metrics)
            return candidate
        self._refuse(reason, metrics)
        return reference


def tensorflow_batch_fn(model) -> Any:
    """``model(x, training=False)`` as a ``tf.function`` over pixel batches (the reference of a
    classifier's ``FrozenForward``)."""
    import tensorflow as tf

    return tf.function(lambda x: model(x, training=False), reduce_retracing=True)
