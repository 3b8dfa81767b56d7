"""The precision gradient steps run at, chosen like the engine is (``core.nets.engine``).

``TRANSFER_LAB_PRECISION`` (the server's default) or a run's own ``precision`` (CLI
``--precision``, the Strategies page) picks it: ``auto`` (default), ``float32``,
``mixed_bfloat16`` or ``mixed_float16``. ``auto`` decides per trained path:

- a GPU that TensorFlow sees: ``mixed_float16`` (tensor cores; the optimizer gets loss scaling);
- a CPU with native bf16 (AVX512_BF16 or AMX): ``mixed_bfloat16`` where it was measured
  faster (``BF16_PAYS``), float32 elsewhere;
- any other CPU: float32 (bf16 there is emulated, far slower: see ``NO_NATIVE_BF16``).

Mixed precision here means Keras' policies: variables stay float32, layers compute in the
low precision. The policy is set on a model's layers for the fit only (``training``) and set
back afterwards, so the model a run evaluates, saves and exports is a float32 model; the
layer that gives the class probabilities, the augmentation and the pixel preprocessing
always compute in float32, and so do losses and metrics.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from core import settings
from core.nets import engine
from core.errors import ConfigError

PRECISION_ENV = settings.PRECISION_ENV
CHOICES = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
LABELS = {"float32": "float32", "mixed_bfloat16": "bf16 mixed", "mixed_float16": "fp16 mixed"}

# The paths a fit trains by gradient (the linear probe and the pixel baseline fit scikit-learn's
# logistic regression: no gradient step of ours, nothing to choose):
# - "scratch": the from-scratch CNN, every layer trained, on images;
# - "head": the dense head on cached features or on the engine's outputs (feature extraction,
#   phase 1 of fine-tuning, frozen base + augmentation with the base on the engine);
# - "fine_tune": the unfrozen top of the base with the head (phase 2 of fine-tuning), and the
#   whole pixel model when TensorFlow runs the frozen base (frozen base + augmentation off the engine).
PATHS = ("scratch", "head", "fine_tune")

# Where bf16 pays on a CPU with native bf16, measured on an AMD EPYC with AVX512_BF16 (batch 32,
# same data, Keras float32 policy against mixed_bfloat16):
BF16_PAYS = {
    # conv-BN-ReLU network of the from-scratch baseline's shape: 105 -> 209 images/s (2.0x)
    "scratch": True,
    # whole-network fine-tune of EfficientNet-Lite0: 63 -> 52 images/s (0.83x): its depthwise
    # convolutions gain nothing from bf16 and the casts around them cost; the unfrozen top of the
    # default backbone is the same kind of layers, so fine-tuning stays float32
    "fine_tune": False,
    # a dense head on pooled features: one or two matrix products of a few MFLOP a batch, where a
    # step's time is the framework's per-step work, not arithmetic; casts only add operations.
    # Not measured on bf16 hardware yet: float32 until a measurement says otherwise
    "head": False,
}
# Measured on this project's CI machine (AMD EPYC, AVX2, no AVX512_BF16), the from-scratch CNN at
# 96 px, batch 32: float32 66.6 images/s, mixed_bfloat16 2.6 images/s (25x slower: emulated).
NO_NATIVE_BF16 = "CPU has no native bf16 (AVX512_BF16 or AMX): bf16 would be emulated, ~25x slower"


@dataclass(frozen=True)
class Precision:
    """The Keras dtype policy a trained path runs at, and why."""

    policy: str  # "float32" | "mixed_bfloat16" | "mixed_float16"
    reason: str = ""

    @property
    def mixed(self) -> bool:
        return self.policy != "float32"

    @property
    def label(self) -> str:
        return LABELS.get(self.policy, self.policy)


FLOAT32 = Precision("float32", "")


def check(value: str | None) -> str:
    """``value`` (a run's ``precision``; empty: the server's) as one of ``CHOICES``, or a ``ConfigError``."""
    value = (value or "").strip().lower()
    if value and value not in CHOICES:
        raise ConfigError(f"precision {value!r} is not one of {', '.join(CHOICES)}.")
    return value


def requested(value: str | None = None) -> str:
    """What a run asks for: its own ``value`` if set, else ``TRANSFER_LAB_PRECISION``, else auto."""
    own = check(value)
    if own:
        return own
    server = settings.precision_request()
    if server not in CHOICES:
        raise ConfigError(f"{PRECISION_ENV}={server!r} is not a precision; use one of {', '.join(CHOICES)}.")
    return server


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``/proc/cpuinfo``; empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def native_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AVX512_BF16 or AMX-BF16), as oneDNN needs for speed."""
    flags = cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def choose(path: str, value: str | None = None, *, gpu: bool | None = None, bf16: bool | None = None) -> Precision:
    """The precision ``path`` (one of ``PATHS``) trains at for a run asking ``value`` (see ``requested``).
    ``gpu`` and ``bf16`` stand in for this machine's answers (tests)."""
    if path not in PATHS:
        raise ValueError(f"unknown trained path {path!r}; one of {', '.join(PATHS)}")
    request = requested(value)
    if request != "auto":
        return Precision(request, f"{request} asked for")
    if engine.has_gpu() if gpu is None else gpu:
        return Precision("mixed_float16", "auto: a GPU, float16 with loss scaling")
    if not (native_bf16() if bf16 is None else bf16):
        return Precision("float32", f"auto: {NO_NATIVE_BF16}")
    if BF16_PAYS[path]:
        return Precision("mixed_bfloat16", "auto: native bf16, measured faster for this network")
    return Precision("float32", "auto: native bf16, but measured no faster for this network")


def describe(value: str | None = None) -> str:
    """One line for the sidebar and the CLI: what each trained path runs at here."""
    try:
        requested(value)
    except ConfigError as exc:
        return str(exc)
    choices = {path: choose(path, value) for path in PATHS}
    policies = {c.policy for c in choices.values()}
    if len(policies) == 1:
        only = next(iter(choices.values()))
        return f"{only.label} · {only.reason}"
    parts = ", ".join(f"{path.replace('_', '-')} {c.label}" for path, c in choices.items())
    return f"{parts} · auto: native bf16 where it was measured faster"


def describe_for_users(value: str | None = None) -> str:
    """``describe`` for the app: a server-forced precision said as a setting, not by its variable's name."""
    return describe(value).replace(f"{PRECISION_ENV}=", "set on the server: ")


# ---------------------------------------------------------------- applying a policy to a model

def _float32_only(layer) -> bool:
    """Layers that keep float32 whatever the policy: the class probabilities, the input, the pixel
    preprocessing and the augmentation (geometry on 0..255 pixels; some image ops have no bf16 kernel)."""
    import keras

    from core.nets.layers import ChannelAffine  # lazy: starts TensorFlow

    if layer.name == "head_output" or isinstance(layer, (keras.layers.InputLayer, ChannelAffine)):
        return True
    module = type(layer).__module__
    return ".preprocessing." in module or layer.name in ("preprocess", "augmentation")


def _leaves(model):
    """Every layer under ``model`` that is not itself a model, outside float32-only sub-models."""
    import keras

    for layer in model.layers:
        if _float32_only(layer):
            continue
        if isinstance(layer, keras.Model):  # the head, a backbone's base, a cut's suffix
            yield from _leaves(layer)
        else:
            yield layer


@contextmanager
def training(model, choice: Precision) -> Iterator[Precision]:
    """``model``'s layers compute at ``choice`` inside the block, float32 again after it.

    Variables are float32 under every policy, so nothing is converted either way; the compiled
    train, test and predict functions are dropped on the way out, so later calls trace again at
    float32. ``compile`` inside the block wraps the optimizer for loss scaling under float16
    (``optimizer``)."""
    changed = []
    if choice.mixed:
        for layer in _leaves(model):
            changed.append((layer, layer.dtype_policy))
            layer.dtype_policy = choice.policy
    try:
        yield choice
    finally:
        for layer, policy in reversed(changed):
            layer.dtype_policy = policy
        if changed:
            for name in ("train_function", "test_function", "predict_function"):
                if hasattr(model, name):
                    setattr(model, name, None)


def optimizer(opt, choice: Precision):
    """``opt``, wrapped for dynamic loss scaling when gradients are float16 (bf16 has float32's range)."""
    if choice.policy != "mixed_float16":
        return opt
    import keras

    return keras.optimizers.LossScaleOptimizer(opt)
