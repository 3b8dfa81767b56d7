"""Backbone registry: ``keras.applications`` models and local ``NAME.keras`` backbones.

A ``Backbone`` takes raw RGB pixels (float, 0..255) and returns the last 4-D
feature map: its preprocessing is a layer inside the model, so extraction,
training, inference and export all feed the same pixels.

ImageNet weights resolve, in order: the weights directory
(``TRANSFER_LAB_WEIGHTS_DIR``) under the official Keras file name, the Keras
cache (``KERAS_HOME`` or ``~/.keras/models``), then Keras' own download.

A backbone is resolved once: ``get_spec(name)`` (or ``resolve``, which passes a
``BackboneSpec`` through) returns the one ``BackboneSpec`` object that knows its input size
rule (``size_for``), preprocessing, layers and weights; callers pass that object on. The
registry (``registry()``) is built once per state of the weights folder (its path and a
stat signature of its files), so a manifest dropped in is seen by the next lookup and an
unchanged folder is never re-parsed.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import settings
from core.hashing import file_id
from core.errors import BadInputSize, NoImageNetTop, UnknownBackbone, WeightsUnavailable
from core.nets import engine

KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
# The one default backbone (CLI, run configs, the advisor, the app): the shipped offline weights.
DEFAULT_BACKBONE = "efficientnet_lite0"
# The app's default where DEFAULT_BACKBONE is not installed and no weights are on this machine:
# a small network that downloads quickly.
_DOWNLOAD_FALLBACK = "mobilenet_v2"

# Preprocessing as (scale, offset, reverse_channels) applied to 0..255 RGB.
_TF_MODE = ((1 / 127.5,) * 3, (-1.0,) * 3, False)
_CAFFE_MODE = ((1.0,) * 3, (-103.939, -116.779, -123.68), True)
_TORCH_MODE = (
    tuple(1 / (255.0 * s) for s in (0.229, 0.224, 0.225)),
    tuple(-m / s for m, s in zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))),
    False,
)
_IDENTITY = ((1.0,) * 3, (0.0,) * 3, False)
# keras.applications' preprocess_input modes by name.
PREPROCESSING = {"tf": _TF_MODE, "caffe": _CAFFE_MODE, "torch": _TORCH_MODE, "inside model": _IDENTITY}


@dataclass(frozen=True)
class BackboneSpec:
    """What the registry knows of a backbone before loading it."""

    name: str
    display_name: str
    family: str  # "keras" (keras.applications) or "local" (NAME.keras + NAME.json)
    default_size: int
    min_size: int
    params: int
    depth: int | None
    top1: float | None
    top5: float | None
    has_top: bool
    preprocess: tuple = _IDENTITY
    preprocess_name: str = "identity"
    # keras.applications: module attribute and weight file names (with / without top)
    constructor: str = ""
    weights_subdir: str = ""
    weights_file: str = ""
    weights_file_notop: str = ""
    sized_weights: tuple[int, ...] = ()
    # local backbones
    model_path: str = ""
    feature_layer: str = ""
    pooled_layer: str = ""
    classes_file: str = ""
    fixed_size: bool = False
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def weights_filename(self, include_top: bool = False, size: int | None = None) -> str:
        """The official Keras file name for this backbone's ImageNet weights."""
        name = self.weights_file if include_top else self.weights_file_notop
        if self.sized_weights:
            rows = size if size in self.sized_weights else self.default_size
            name = name.format(rows=rows)
        return name

    # ------------------------------------------------ what the backbone knows of itself

    def size_for(self, requested: int | None = None) -> int:
        """The input size this backbone runs at when ``requested`` is asked for: its own size when
        it has a fixed one (a local backbone) or nothing is asked, else ``requested``. The one rule
        extraction, the cache keys, speed and loading share; ``check_size`` refuses a too-small one."""
        return self.default_size if self.fixed_size or not requested else int(requested)

    def check_size(self, requested: int | None = None) -> int:
        """``size_for(requested)``, or ``BadInputSize`` below the backbone's smallest input."""
        size = self.size_for(requested)
        if size < self.min_size:
            raise BadInputSize(f"{self.display_name} needs inputs of at least {self.min_size} px, got {size}.")
        return size

    def preprocess_layer(self, name: str = "preprocess"):
        """Its preprocessing as a Keras layer (``preprocess_layer``)."""
        return preprocess_layer(self, name)

    def weights_location(self, include_top: bool = False, size: int | None = None) -> Path | None:
        """Where its ImageNet weights are on disk, or None (``weights_location``)."""
        return weights_location(self, include_top, size)

    def weights_id(self, weights: Any, seed: int = 0, size: int | None = None) -> str:
        """Identity of the weights it would load with (``weights_id``)."""
        return weights_id(self, weights, seed, size)

    def load(self, weights: Any = "imagenet", input_size: int | None = None, seed: int = 0) -> "Backbone":
        """This backbone as a feature extractor on raw pixels (``load_backbone``)."""
        return load_backbone(self, weights, input_size, seed)

    def classifier(self, weights: Any = "imagenet"):
        """This backbone with its ImageNet top, and its size (``load_classifier``)."""
        return load_classifier(self, weights)


def keras_application(*, name: str, display_name: str, constructor: str, default_size: int, min_size: int,
                      params: int, depth: int, top1: float, top5: float, preprocessing: str,
                      weights_subdir: str, weights_file: str, weights_file_notop: str,
                      sized_weights: tuple[int, ...] = (), url: str = KERAS_WEIGHTS_URL) -> BackboneSpec:
    """A ``keras.applications`` backbone, declared by keyword. ``preprocessing``: a key of
    ``PREPROCESSING`` (its ``preprocess_input`` mode)."""
    return BackboneSpec(
        name=name, display_name=display_name, family="keras", default_size=default_size, min_size=min_size,
        params=params, depth=depth, top1=top1, top5=top5, has_top=True, preprocess=PREPROCESSING[preprocessing],
        preprocess_name=preprocessing, constructor=constructor, weights_subdir=weights_subdir,
        weights_file=weights_file, weights_file_notop=weights_file_notop, sized_weights=sized_weights,
        extra={"url": url + weights_subdir},
    )


# Figures as published in the Keras Applications documentation table.
KERAS_BACKBONES: dict[str, BackboneSpec] = {s.name: s for s in [
    keras_application(name="vgg16", display_name="VGG16", constructor="VGG16", default_size=224, min_size=32,
                      params=138_400_000, depth=16, top1=71.3, top5=90.1, preprocessing="caffe",
                      weights_subdir="vgg16/", weights_file="vgg16_weights_tf_dim_ordering_tf_kernels.h5",
                      weights_file_notop="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    keras_application(name="vgg19", display_name="VGG19", constructor="VGG19", default_size=224, min_size=32,
                      params=143_700_000, depth=19, top1=71.3, top5=90.0, preprocessing="caffe",
                      weights_subdir="vgg19/", weights_file="vgg19_weights_tf_dim_ordering_tf_kernels.h5",
                      weights_file_notop="vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    keras_application(name="resnet50", display_name="ResNet50", constructor="ResNet50", default_size=224,
                      min_size=32, params=25_600_000, depth=107, top1=74.9, top5=92.1, preprocessing="caffe",
                      weights_subdir="resnet/", weights_file="resnet50_weights_tf_dim_ordering_tf_kernels.h5",
                      weights_file_notop="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    keras_application(name="resnet50v2", display_name="ResNet50V2", constructor="ResNet50V2", default_size=224,
                      min_size=32, params=25_600_000, depth=103, top1=76.0, top5=93.0, preprocessing="tf",
                      weights_subdir="resnet/",
                      weights_file="resnet50v2_weights_tf_dim_ordering_tf_kernels.h5",
                      weights_file_notop="resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    keras_application(name="inception_v3", display_name="InceptionV3", constructor="InceptionV3",
                      default_size=299, min_size=75, params=23_900_000, depth=189, top1=77.9, top5=93.7,
                      preprocessing="tf", weights_subdir="inception_v3/",
                      weights_file="inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
                      weights_file_notop="inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    keras_application(name="xception", display_name="Xception", constructor="Xception", default_size=299,
                      min_size=71, params=22_900_000, depth=81, top1=79.0, top5=94.5, preprocessing="tf",
                      weights_subdir="xception/",
                      weights_file="xception_weights_tf_dim_ordering_tf_kernels.h5",
                      weights_file_notop="xception_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    keras_application(name="inception_resnet_v2", display_name="InceptionResNetV2",
                      constructor="InceptionResNetV2", default_size=299, min_size=75, params=55_900_000,
                      depth=449, top1=80.3, top5=95.3, preprocessing="tf",
                      weights_subdir="inception_resnet_v2/",
                      weights_file="inception_resnet_v2_weights_tf_dim_ordering_tf_kernels.h5",
                      weights_file_notop="inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    keras_application(name="mobilenet", display_name="MobileNet", constructor="MobileNet", default_size=224,
                      min_size=32, params=4_300_000, depth=55, top1=70.4, top5=89.5, preprocessing="tf",
                      weights_subdir="mobilenet/", weights_file="mobilenet_1_0_{rows}_tf.h5",
                      weights_file_notop="mobilenet_1_0_{rows}_tf_no_top.h5",
                      sized_weights=(128, 160, 192, 224)),
    keras_application(name="mobilenet_v2", display_name="MobileNetV2", constructor="MobileNetV2",
                      default_size=224, min_size=32, params=3_500_000, depth=105, top1=71.3, top5=90.1,
                      preprocessing="tf", weights_subdir="mobilenet_v2/",
                      weights_file="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}.h5",
                      weights_file_notop="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5",
                      sized_weights=(96, 128, 160, 192, 224)),
    keras_application(name="densenet121", display_name="DenseNet121", constructor="DenseNet121",
                      default_size=224, min_size=32, params=8_100_000, depth=242, top1=75.0, top5=92.3,
                      preprocessing="torch", weights_subdir="densenet/",
                      weights_file="densenet121_weights_tf_dim_ordering_tf_kernels.h5",
                      weights_file_notop="densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    keras_application(name="nasnet_mobile", display_name="NASNetMobile", constructor="NASNetMobile",
                      default_size=224, min_size=32, params=5_300_000, depth=389, top1=74.4, top5=91.9,
                      preprocessing="tf", weights_subdir="nasnet/", weights_file="NASNet-mobile.h5",
                      weights_file_notop="NASNet-mobile-no-top.h5"),
    keras_application(name="efficientnet_b0", display_name="EfficientNetB0", constructor="EfficientNetB0",
                      default_size=224, min_size=32, params=5_300_000, depth=132, top1=77.1, top5=93.3,
                      preprocessing="inside model", weights_subdir="", weights_file="efficientnetb0.h5",
                      weights_file_notop="efficientnetb0_notop.h5",
                      url="https://storage.googleapis.com/keras-applications/"),
]}

# ---------------------------------------------------------------- registry

def _beside(folder: Path, name: object) -> str:
    """A file a manifest names, only as a plain file name in the manifest's own folder: a
    manifest is data, so an absolute path or a ``..`` must not make the app read elsewhere."""
    if not name:
        return ""
    if not isinstance(name, str) or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"classes_file {name!r} is not a file name in {folder}")
    path = folder / name
    if not path.resolve().is_relative_to(folder.resolve()):
        raise ValueError(f"classes_file {name!r} leads outside {folder}")
    return str(path)


def local_backbone(manifest: Path) -> BackboneSpec | None:
    """The local backbone a ``NAME.json`` manifest beside its ``NAME.keras`` declares, or None (no
    model file, or a broken manifest: not a backbone, the rest still list). Read only when the
    registry is (re)built, never per lookup."""
    model_path = manifest.with_suffix(".keras")
    if not model_path.exists():
        return None
    try:
        m = json.loads(manifest.read_text(encoding="utf-8"))
        size = int(m["input_size"][0])
        pre = m.get("preprocessing", {})
        mean = [float(v) for v in pre.get("mean", (0.0,) * 3)]
        std = [float(v) for v in pre.get("std", (1.0,) * 3)]
        reverse = str(pre.get("channel_order", "RGB")).upper() == "BGR"
        name = str(m.get("name") or manifest.stem)
        return BackboneSpec(
            name=name, display_name=str(m.get("display_name") or name), family="local",
            default_size=size, min_size=size, params=int(m.get("params") or 0), depth=None,
            top1=m.get("imagenet_top1"), top5=m.get("imagenet_top5"),
            has_top=bool(m.get("predictions_layer")),
            preprocess=(tuple(1 / s for s in std), tuple(-mu / s for mu, s in zip(mean, std)), reverse),
            preprocess_name=f"(x - {mean[0]:g}) / {std[0]:g}", model_path=str(model_path),
            feature_layer=str(m["feature_layer"]), pooled_layer=str(m.get("pooled_layer") or ""),
            classes_file=_beside(manifest.parent, m.get("classes_file")),
            fixed_size=True, extra={"predictions_layer": m.get("predictions_layer", ""),
                                    "license": m.get("license", ""), "source": m.get("source", "")},
        )
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None


def _local_specs(folder: Path | None) -> dict[str, BackboneSpec]:
    """Every ``NAME.keras`` + ``NAME.json`` pair in the weights directory (parsed now: ``registry``
    keeps the result while the folder does not change)."""
    if folder is None or not folder.is_dir():
        return {}
    out: dict[str, BackboneSpec] = {}
    for manifest in sorted(folder.glob("*.json")):
        spec = local_backbone(manifest)
        if spec is not None:
            out[spec.name] = spec
    return out


@dataclass(frozen=True)
class Registry:
    """Every backbone for one state of the weights folder: local ones first (they work offline),
    then ``keras.applications``."""

    folder: Path | None
    local: dict[str, BackboneSpec]

    @property
    def specs(self) -> list[BackboneSpec]:
        return [*self.local.values(), *(s for n, s in KERAS_BACKBONES.items() if n not in self.local)]

    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def get(self, name: str) -> BackboneSpec:
        spec = self.local.get(name) or KERAS_BACKBONES.get(name)
        if spec is None:
            raise UnknownBackbone(f"Unknown backbone '{name}'. Known backbones: {', '.join(self.names())}.")
        return spec

    def __contains__(self, name: object) -> bool:
        return name in self.local or name in KERAS_BACKBONES


def _signature(folder: Path | None) -> tuple:
    """What says a weights folder changed, without reading a file: the stat of every manifest
    and model file in it (a dropped-in, removed, replaced or edited one changes it)."""
    if folder is None:
        return ()
    try:
        with os.scandir(folder) as entries:
            rows = []
            for e in entries:
                if e.name.endswith((".json", ".keras")):
                    try:
                        st = e.stat()
                    except OSError:
                        continue
                    rows.append((e.name, st.st_mtime_ns, st.st_size, st.st_ino))
    except OSError:
        return ("missing",)
    return tuple(sorted(rows))


_REGISTRIES: dict[str, tuple[tuple, Registry]] = {}  # weights folder -> (its signature, its registry)
_REGISTRY_LOCK = threading.Lock()


def registry() -> Registry:
    """The backbones for the weights folder as it is now: built once per folder state (its path
    and ``_signature``), so lookups cost a directory stat, not a manifest parse."""
    folder = settings.weights_dir()
    key = str(folder) if folder is not None else ""
    sig = _signature(folder)
    held = _REGISTRIES.get(key)
    if held is not None and held[0] == sig:
        return held[1]
    with _REGISTRY_LOCK:
        held = _REGISTRIES.get(key)
        if held is not None and held[0] == sig:
            return held[1]
        built = Registry(folder, _local_specs(folder))
        if len(_REGISTRIES) >= 8 and key not in _REGISTRIES:
            _REGISTRIES.pop(next(iter(_REGISTRIES)))
        _REGISTRIES[key] = (sig, built)
        return built


def list_backbones() -> list[BackboneSpec]:
    """Local backbones first (they work offline), then ``keras.applications``."""
    return registry().specs


def get_spec(name: str) -> BackboneSpec:
    """The backbone called ``name``, or ``UnknownBackbone`` listing the known ones."""
    return registry().get(name)


def resolve(backbone: str | BackboneSpec) -> BackboneSpec:
    """``backbone`` as its ``BackboneSpec``: a spec passes through (no lookup), a name is looked up."""
    return backbone if isinstance(backbone, BackboneSpec) else get_spec(backbone)


def default_backbone() -> str:
    """The backbone to start with: ``DEFAULT_BACKBONE`` where it is installed (the shipped offline
    weights), else the first backbone whose weights are on this machine, else a small one that
    downloads quickly."""
    reg = registry()
    if DEFAULT_BACKBONE in reg:
        return DEFAULT_BACKBONE
    offline = [s.name for s in reg.specs if weights_location(s) is not None]
    return offline[0] if offline else _DOWNLOAD_FALLBACK


# ---------------------------------------------------------------- weights

def keras_cache_dir() -> Path:
    return settings.keras_home() / "models"


# Keras caches a few downloads under another name than the URL's file name.
_CACHE_NAMES = {"NASNet-mobile.h5": "nasnet_mobile.h5", "NASNet-mobile-no-top.h5": "nasnet_mobile_no_top.h5"}


def weights_location(spec: BackboneSpec, include_top: bool = False, size: int | None = None) -> Path | None:
    """Where ImageNet weights for ``spec`` are on disk, or None (a download is needed)."""
    if spec.family == "local":
        return Path(spec.model_path)
    filename = spec.weights_filename(include_top, size)
    names = [filename, *([_CACHE_NAMES[filename]] if filename in _CACHE_NAMES else [])]
    folders = [settings.weights_dir()] if settings.weights_dir() else []
    folders.append(keras_cache_dir())
    candidates = [folder / name for folder in folders for name in names]
    return next((c for c in candidates if c.is_file()), None)


def missing_weights_message(spec: BackboneSpec, include_top: bool = False, size: int | None = None) -> str:
    filename = spec.weights_filename(include_top, size)
    url = spec.extra["url"] + filename
    target = settings.weights_dir() or keras_cache_dir()
    return (
        f"ImageNet weights for {spec.display_name} are not available offline. "
        f"Download {url} and put the file '{filename}' in {target} "
        f"(or set {settings.WEIGHTS_ENV} to a folder holding it), or use random weights."
    )




def weights_id(spec: BackboneSpec, weights: Any, seed: int = 0, size: int | None = None) -> str:
    """Identity of the weights a backbone would load with: file hash or random + seed."""
    if weights is None:
        return f"random-{seed}"
    if weights == "imagenet":
        where = weights_location(spec, size=size)
        return f"imagenet-{file_id(where)}" if where else "imagenet-download"
    return f"file-{file_id(Path(weights))}"


# ---------------------------------------------------------------- loading

@dataclass
class Backbone:
    """A loaded backbone: ``model`` maps raw RGB 0..255 to the last 4-D feature map.

    ``base`` is the network without the preprocessing layer (the part whose top
    layers fine-tuning unfreezes; Grad-CAM and feature maps read its layers).
    """

    spec: BackboneSpec
    model: Any
    base: Any
    preprocess: Any
    input_size: int
    weights_id: str
    _forwards: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.model.output.shape[1:])

    @property
    def weights_stable(self) -> bool:
        """Whether the weights are the same in a later process (a file, not a random draw or a
        download that may change), so what is derived from them may be kept on disk."""
        return not self.weights_id.startswith(("random", "imagenet-download"))

    def forward(self, pooling: str):
        """The compiled extraction function (``core.nets.forward.compiled_forward``), traced once
        per backbone and pooling: a trace costs seconds, and a kept backbone extracts split
        after split and, on the Label page, every few new photos."""
        if pooling not in self._forwards:
            from core.nets.forward import compiled_forward  # lazy: starts TensorFlow

            self._forwards[pooling] = compiled_forward(self.model, pooling)
        return self._forwards[pooling]

    def frozen_forward(self, pooling: str):
        """The engine's batch function for ``pooling`` (``core.nets.engine.FrozenForward``): OpenVINO
        or TensorFlow as ``TRANSFER_LAB_ENGINE`` and the parity guard decide, numpy out. One per
        pooling and engine; ``forward(pooling)`` stays its TensorFlow reference."""
        choice = engine.choose()
        key = ("engine", pooling, choice)
        if key not in self._forwards:
            network = f"{self.spec.name}|{self.weights_id}"
            self._forwards[key] = engine.FrozenForward(
                self.forward(pooling), self.input_size, network, pooling, choice=choice,
                head=_imagenet_head(self.spec) if pooling == "avg" and self.weights_id.startswith("imagenet-")
                else None,
                ir_key=f"{network}|{self.input_size}|{pooling}|{self.spec.preprocess}" if self.weights_stable
                else None)
        return self._forwards[key]


def _imagenet_head(spec: BackboneSpec):
    """For the parity guard: pooled features -> ImageNet logits of a local backbone's own top
    (its ``predictions`` Dense layer), loaded only when a check needs it; None without a top."""
    if spec.family != "local" or not spec.extra.get("predictions_layer") or not spec.pooled_layer:
        return None
    weights: list = []

    def head(features):
        import numpy as np

        if not weights:
            import keras

            full = keras.saving.load_model(spec.model_path, safe_mode=True, compile=False)
            kernel, bias = full.get_layer(spec.extra["predictions_layer"]).get_weights()[:2]
            weights.extend([np.asarray(kernel, np.float64), np.asarray(bias, np.float64)])
        kernel, bias = weights
        f = np.asarray(features, np.float64).reshape(len(features), -1)
        if f.shape[1] != kernel.shape[0]:
            return None  # not the head's input width: no top-1 check
        return f @ kernel + bias

    return head


def preprocess_layer(spec: BackboneSpec, name: str = "preprocess"):
    """The backbone's preprocessing as a Keras layer (see ``core.nets.layers.ChannelAffine``)."""
    from core.nets.layers import ChannelAffine  # lazy: starts TensorFlow

    scale, offset, reverse = spec.preprocess
    return ChannelAffine(scale=scale, offset=offset, reverse_channels=reverse, name=name)


def _load_local(spec: BackboneSpec, weights: Any, seed: int, include_top: bool):
    import keras

    full = keras.saving.load_model(spec.model_path, safe_mode=True, compile=False)
    if weights is None:
        keras.utils.set_random_seed(seed)
        full = keras.models.clone_model(full)  # same graph, fresh initialisers
    elif weights != "imagenet":
        full.load_weights(str(weights))
    if include_top:
        return full
    return keras.Model(full.inputs, full.get_layer(spec.feature_layer).output, name=f"{spec.name}_base")


def _load_keras(spec: BackboneSpec, weights: Any, seed: int, size: int, include_top: bool):
    import keras

    ctor = getattr(keras.applications, spec.constructor)
    kwargs: dict[str, Any] = {"include_top": include_top}
    if not include_top:
        kwargs["input_shape"] = (size, size, 3)
    if weights is None:
        keras.utils.set_random_seed(seed)
        return ctor(weights=None, **kwargs)
    if weights == "imagenet":
        where = weights_location(spec, include_top, size)
        if where is not None:
            return ctor(weights=str(where), **kwargs)
        try:
            return ctor(weights="imagenet", **kwargs)
        except Exception as exc:  # offline: URLError, socket errors, HTTP errors
            raise WeightsUnavailable(missing_weights_message(spec, include_top, size)) from exc
    path = Path(weights)
    if not path.is_file():
        raise WeightsUnavailable(f"Weights file not found: {path}")
    return ctor(weights=str(path), **kwargs)


def load_backbone(
    name: str | BackboneSpec, weights: Any = "imagenet", input_size: int | None = None, seed: int = 0
) -> Backbone:
    """Load a backbone (a name or its ``BackboneSpec``) as a feature extractor on raw pixels.

    ``weights``: "imagenet", None (random init with ``seed``) or a file path.
    Raises ``WeightsUnavailable`` with the file name and folder to fix it, ``BadInputSize``
    for an input below the backbone's smallest.
    """
    import keras

    from core.nets.layers import InferenceModel  # lazy: starts TensorFlow

    spec = resolve(name)
    size = spec.check_size(input_size)
    if spec.family == "local":
        base = _load_local(spec, weights, seed, include_top=False)
    else:
        base = _load_keras(spec, weights, seed, size, include_top=False)
    base = InferenceModel(base.input, base.output, name=base.name)
    pre = preprocess_layer(spec)
    inputs = keras.Input((size, size, 3), name="pixels")
    model = keras.Model(inputs, base(pre(inputs)), name=f"{spec.name}_features")
    return Backbone(spec, model, base, pre, size, weights_id(spec, weights, seed, size))


def load_classifier(name: str | BackboneSpec, weights: Any = "imagenet"):
    """The ImageNet classifier (backbone with its top) on raw pixels, and its size;
    ``NoImageNetTop`` for a backbone without one."""
    import keras

    spec = resolve(name)
    if not spec.has_top:
        raise NoImageNetTop(f"{spec.display_name} has no ImageNet classification top.")
    size = spec.default_size
    if spec.family == "local":
        net = _load_local(spec, weights, 0, include_top=True)
    else:
        net = _load_keras(spec, weights, 0, size, include_top=True)
    inputs = keras.Input((size, size, 3), name="pixels")
    outputs = net(preprocess_layer(spec)(inputs))
    return keras.Model(inputs, outputs, name=f"{spec.name}_imagenet"), size


def imagenet_classes(spec: BackboneSpec | None = None) -> list[str]:
    """The 1,000 ImageNet class names, offline: a local classes file, else Keras' index."""
    candidates = []
    if spec is not None and spec.classes_file:
        candidates.append(Path(spec.classes_file))
    for local in registry().local.values():
        if local.classes_file:
            candidates.append(Path(local.classes_file))
    for path in candidates:
        if path.is_file():
            names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            if len(names) == 1000:
                return names
    index = keras_cache_dir() / "imagenet_class_index.json"
    if index.is_file():
        data = json.loads(index.read_text(encoding="utf-8"))
        return [data[str(i)][1] for i in range(1000)]
    raise WeightsUnavailable(
        "ImageNet class names are not available offline. Put imagenet_classes.txt (one name per line) "
        f"in {settings.weights_dir() or settings.WEIGHTS_ENV + ' folder'}, or download "
        "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json "
        f"into {keras_cache_dir()}."
    )
