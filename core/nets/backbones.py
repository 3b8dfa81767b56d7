"""Backbone registry: ``keras.applications`` models and local ``NAME.keras`` backbones.

A ``Backbone`` takes raw RGB pixels (float, 0..255) and returns the last 4-D
feature map: its preprocessing is a layer inside the model, so extraction,
training, inference and export all feed the same pixels.

ImageNet weights resolve, in order: the weights directory
(``TRANSFER_LAB_WEIGHTS_DIR``) under the official Keras file name, the Keras
cache (``KERAS_HOME`` or ``~/.keras/models``), then Keras' own download.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import settings
from core.hashing import file_id
from core.errors import UnknownBackbone, WeightsUnavailable

KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"

# Preprocessing as (scale, offset, reverse_channels) applied to 0..255 RGB.
_TF_MODE = ((1 / 127.5,) * 3, (-1.0,) * 3, False)
_CAFFE_MODE = ((1.0,) * 3, (-103.939, -116.779, -123.68), True)
_TORCH_MODE = (
    tuple(1 / (255.0 * s) for s in (0.229, 0.224, 0.225)),
    tuple(-m / s for m, s in zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))),
    False,
)
_IDENTITY = ((1.0,) * 3, (0.0,) * 3, False)


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


def _keras(name, display, ctor, size, min_size, params, depth, top1, top5, prep, prep_name,
           subdir, file_top, file_notop, sized=(), url=KERAS_WEIGHTS_URL) -> BackboneSpec:
    return BackboneSpec(
        name=name, display_name=display, family="keras", default_size=size, min_size=min_size,
        params=params, depth=depth, top1=top1, top5=top5, has_top=True, preprocess=prep,
        preprocess_name=prep_name, constructor=ctor, weights_subdir=subdir,
        weights_file=file_top, weights_file_notop=file_notop, sized_weights=sized,
        extra={"url": url + subdir},
    )


# Figures as published in the Keras Applications documentation table.
KERAS_BACKBONES: dict[str, BackboneSpec] = {s.name: s for s in [
    _keras("vgg16", "VGG16", "VGG16", 224, 32, 138_400_000, 16, 71.3, 90.1, _CAFFE_MODE, "caffe",
           "vgg16/", "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
           "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    _keras("vgg19", "VGG19", "VGG19", 224, 32, 143_700_000, 19, 71.3, 90.0, _CAFFE_MODE, "caffe",
           "vgg19/", "vgg19_weights_tf_dim_ordering_tf_kernels.h5",
           "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    _keras("resnet50", "ResNet50", "ResNet50", 224, 32, 25_600_000, 107, 74.9, 92.1, _CAFFE_MODE, "caffe",
           "resnet/", "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
           "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    _keras("resnet50v2", "ResNet50V2", "ResNet50V2", 224, 32, 25_600_000, 103, 76.0, 93.0, _TF_MODE, "tf",
           "resnet/", "resnet50v2_weights_tf_dim_ordering_tf_kernels.h5",
           "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    _keras("inception_v3", "InceptionV3", "InceptionV3", 299, 75, 23_900_000, 189, 77.9, 93.7, _TF_MODE, "tf",
           "inception_v3/", "inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
           "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    _keras("xception", "Xception", "Xception", 299, 71, 22_900_000, 81, 79.0, 94.5, _TF_MODE, "tf",
           "xception/", "xception_weights_tf_dim_ordering_tf_kernels.h5",
           "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    _keras("inception_resnet_v2", "InceptionResNetV2", "InceptionResNetV2", 299, 75, 55_900_000, 449,
           80.3, 95.3, _TF_MODE, "tf", "inception_resnet_v2/",
           "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels.h5",
           "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    _keras("mobilenet", "MobileNet", "MobileNet", 224, 32, 4_300_000, 55, 70.4, 89.5, _TF_MODE, "tf",
           "mobilenet/", "mobilenet_1_0_{rows}_tf.h5", "mobilenet_1_0_{rows}_tf_no_top.h5",
           sized=(128, 160, 192, 224)),
    _keras("mobilenet_v2", "MobileNetV2", "MobileNetV2", 224, 32, 3_500_000, 105, 71.3, 90.1, _TF_MODE, "tf",
           "mobilenet_v2/", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}.h5",
           "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5",
           sized=(96, 128, 160, 192, 224)),
    _keras("densenet121", "DenseNet121", "DenseNet121", 224, 32, 8_100_000, 242, 75.0, 92.3, _TORCH_MODE,
           "torch", "densenet/", "densenet121_weights_tf_dim_ordering_tf_kernels.h5",
           "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    _keras("nasnet_mobile", "NASNetMobile", "NASNetMobile", 224, 32, 5_300_000, 389, 74.4, 91.9, _TF_MODE,
           "tf", "nasnet/", "NASNet-mobile.h5", "NASNet-mobile-no-top.h5"),
    _keras("efficientnet_b0", "EfficientNetB0", "EfficientNetB0", 224, 32, 5_300_000, 132, 77.1, 93.3,
           _IDENTITY, "inside model", "", "efficientnetb0.h5", "efficientnetb0_notop.h5",
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


def _local_specs(folder: Path | None) -> dict[str, BackboneSpec]:
    """Every ``NAME.keras`` + ``NAME.json`` pair in the weights directory."""
    if folder is None or not folder.is_dir():
        return {}
    out: dict[str, BackboneSpec] = {}
    for manifest in sorted(folder.glob("*.json")):
        model_path = manifest.with_suffix(".keras")
        if not model_path.exists():
            continue
        try:
            m = json.loads(manifest.read_text(encoding="utf-8"))
            size = int(m["input_size"][0])
            pre = m.get("preprocessing", {})
            mean = [float(v) for v in pre.get("mean", (0.0,) * 3)]
            std = [float(v) for v in pre.get("std", (1.0,) * 3)]
            reverse = str(pre.get("channel_order", "RGB")).upper() == "BGR"
            name = str(m.get("name") or manifest.stem)
            out[name] = BackboneSpec(
                name=name, display_name=str(m.get("display_name") or name), family="local",
                default_size=size, min_size=size, params=int(m.get("params") or 0), depth=None,
                top1=m.get("imagenet_top1"), top5=m.get("imagenet_top5"),
                has_top=bool(m.get("predictions_layer")),
                preprocess=(tuple(1 / s for s in std), tuple(-mu / s for mu, s in zip(mean, std)), reverse),
                preprocess_name=f"(x - {mean[0]:g}) / {std[0]:g}", model_path=str(model_path),
                feature_layer=str(m["feature_layer"]), pooled_layer=str(m.get("pooled_layer") or ""),
                classes_file=_beside(folder, m.get("classes_file")),
                fixed_size=True, extra={"predictions_layer": m.get("predictions_layer", ""),
                                        "license": m.get("license", ""), "source": m.get("source", "")},
            )
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            continue  # a broken manifest is not a backbone; the rest still list
    return out


def list_backbones() -> list[BackboneSpec]:
    """Local backbones first (they work offline), then ``keras.applications``."""
    return [*_local_specs(settings.weights_dir()).values(), *KERAS_BACKBONES.values()]


def get_spec(name: str) -> BackboneSpec:
    for spec in list_backbones():
        if spec.name == name:
            return spec
    known = ", ".join(s.name for s in list_backbones())
    raise UnknownBackbone(f"Unknown backbone '{name}'. Known backbones: {known}.")


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
            from core.nets.forward import compiled_forward

            self._forwards[pooling] = compiled_forward(self.model, pooling)
        return self._forwards[pooling]

    def frozen_forward(self, pooling: str):
        """The engine's batch function for ``pooling`` (``core.nets.engine.FrozenForward``): OpenVINO
        or TensorFlow as ``TRANSFER_LAB_ENGINE`` and the parity guard decide, numpy out. One per
        pooling and engine; ``forward(pooling)`` stays its TensorFlow reference."""
        from core.nets import engine

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
    from core.nets.layers import ChannelAffine

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
    name: str, weights: Any = "imagenet", input_size: int | None = None, seed: int = 0
) -> Backbone:
    """Load a backbone as a feature extractor on raw pixels.

    ``weights``: "imagenet", None (random init with ``seed``) or a file path.
    Raises ``WeightsUnavailable`` with the file name and folder to fix it.
    """
    import keras

    from core.nets.layers import InferenceModel

    spec = get_spec(name)
    size = spec.default_size if spec.fixed_size or not input_size else int(input_size)
    if size < spec.min_size:
        raise UnknownBackbone(f"{spec.display_name} needs inputs of at least {spec.min_size} px, got {size}.")
    if spec.family == "local":
        base = _load_local(spec, weights, seed, include_top=False)
    else:
        base = _load_keras(spec, weights, seed, size, include_top=False)
    base = InferenceModel(base.input, base.output, name=base.name)
    pre = preprocess_layer(spec)
    inputs = keras.Input((size, size, 3), name="pixels")
    model = keras.Model(inputs, base(pre(inputs)), name=f"{spec.name}_features")
    return Backbone(spec, model, base, pre, size, weights_id(spec, weights, seed, size))


def load_classifier(name: str, weights: Any = "imagenet"):
    """The ImageNet classifier (backbone with its top) on raw pixels, and its size."""
    import keras

    spec = get_spec(name)
    if not spec.has_top:
        raise UnknownBackbone(f"{spec.display_name} has no ImageNet classification top.")
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
    for local in _local_specs(settings.weights_dir()).values():
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
