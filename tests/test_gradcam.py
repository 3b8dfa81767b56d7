"""Grad-CAM: shape and range, it points at the informative region on a constructed
model, and it reaches the feature maps inside nested models (run models, ImageNet
classifiers, fine-tuned and reloaded models)."""

from __future__ import annotations

import numpy as np
import pytest

from core.nets import explain
from core.errors import TransferLabError

SIZE = 32


def red_detector_base(size: int = SIZE):
    """A "backbone": channel 0 fires on red pixels, channel 1 on blue; 2x2 pooled -> 16x16 maps."""
    import keras

    inputs = keras.Input((size, size, 3), name="base_input")
    conv = keras.layers.Conv2D(2, 1, activation="relu", name="detect")
    x = conv(inputs)
    x = keras.layers.MaxPooling2D(2, name="top_pool")(x)
    base = keras.Model(inputs, x, name="detector_base")
    kernel = np.zeros((1, 1, 3, 2), np.float32)
    kernel[0, 0] = [[1, -1], [-1, 0], [-1, 1]]  # ch0: r - g - b ; ch1: b - r
    conv.set_weights([kernel, np.zeros(2, np.float32)])
    return base


def red_patch_image(size: int = SIZE, box=(2, 12, 4, 14)) -> np.ndarray:
    img = np.full((size, size, 3), 90, np.uint8)  # grey: no evidence either way
    top, bottom, left, right = box
    img[top:bottom, left:right] = (240, 10, 10)
    return img


def transfer_model_on(base, classes: int, aug: bool = True):
    """Built the way runs are: core.train.strategies.build_transfer_model over a Backbone."""
    from core.nets.backbones import Backbone, get_spec
    from core.nets.layers import ChannelAffine
    from core.train.strategies import Augment, augmentation, build_head, build_transfer_model

    pre = ChannelAffine(scale=(1 / 255.0,) * 3, offset=(0.0,) * 3, name="preprocess")
    bb = Backbone(get_spec("mobilenet_v2"), None, base, pre, SIZE, "test")
    head = build_head(2, classes, 0, 0.0)
    dense = head.get_layer("head_output")
    if classes == 2:  # one sigmoid unit: positive = "red"
        dense.set_weights([np.array([[8.0], [-8.0]], np.float32), np.array([-0.5], np.float32)])
    else:
        dense.set_weights([np.array([[8.0, -8.0, 0.0], [-8.0, 8.0, 0.0]], np.float32), np.zeros(3, np.float32)])
    return build_transfer_model(bb, "avg", head, augmentation(Augment(), seed=1) if aug else None)


def assert_points_at_box(cam, box=(2, 12, 4, 14), scale=2):
    top, bottom, left, right = (v // scale for v in box)
    inside = cam[top:bottom, left:right]
    outside = cam.copy()
    outside[top:bottom, left:right] = np.nan
    assert inside.mean() > 0.5, inside.mean()
    assert np.nanmax(outside) < 0.2, np.nanmax(outside)
    peak = np.unravel_index(np.argmax(cam), cam.shape)
    assert top <= peak[0] < bottom and left <= peak[1] < right


def test_gradcam_points_at_the_red_patch_through_a_nested_base():
    model = transfer_model_on(red_detector_base(), classes=3)
    path = explain.gradcam_layer_path(model)
    assert [layer.name for layer in path] == ["detector_base", "top_pool"]
    image = red_patch_image()
    probs = np.asarray(model(image[None].astype("float32"), training=False))[0]
    assert probs.argmax() == 0  # "red"
    cam = explain.gradcam(model, image)
    assert cam.class_index == 0 and cam.layer == "detector_base/top_pool"
    assert cam.heatmap.shape == (16, 16) and cam.heatmap.dtype == np.float32
    assert cam.heatmap.min() >= 0 and cam.heatmap.max() == pytest.approx(1.0)
    assert_points_at_box(cam.heatmap)
    # the "blue" class has no support anywhere in this image: an all-zero map, not noise or NaN
    blue = explain.gradcam(model, image, class_index=1)
    assert blue.class_index == 1 and np.all(blue.heatmap == 0)


def test_gradcam_moves_with_the_object():
    model = transfer_model_on(red_detector_base(), classes=3, aug=False)
    box = (18, 30, 16, 28)
    cam = explain.gradcam(model, red_patch_image(box=box)).heatmap
    assert_points_at_box(cam, box)


def test_gradcam_sigmoid_model_and_save_reload(tmp_path):
    import keras

    import core.nets.layers  # noqa: F401

    model = transfer_model_on(red_detector_base(), classes=2)
    image = red_patch_image()
    cam = explain.gradcam(model, image)
    assert cam.class_index == 1  # the sigmoid unit says "red"
    assert_points_at_box(cam.heatmap)
    negated = explain.gradcam(model, image, class_index=0)
    assert negated.class_index == 0 and negated.score == pytest.approx(-cam.score)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    again = explain.gradcam(loaded, image)
    np.testing.assert_allclose(again.heatmap, cam.heatmap, atol=1e-5)
    assert again.layer == cam.layer


def test_gradcam_uses_the_score_before_the_softmax():
    """A saturated softmax (p = 1.0 in float32) would give zero gradients; logits do not."""
    model = transfer_model_on(red_detector_base(), classes=3, aug=False)
    dense = model.get_layer("head").get_layer("head_output")
    w, b = dense.get_weights()
    dense.set_weights([w * 50, b])
    image = red_patch_image()
    probs = np.asarray(model(image[None].astype("float32"), training=False))[0]
    assert probs[0] == 1.0
    cam = explain.gradcam(model, image)
    assert cam.heatmap.max() == pytest.approx(1.0)
    assert_points_at_box(cam.heatmap)


def test_gradcam_on_a_flat_model_and_errors():
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv_a")(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    flat = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    cam = explain.gradcam(flat, np.random.default_rng(0).integers(0, 255, (SIZE, SIZE, 3)))
    assert cam.layer == "conv_b" and cam.heatmap.shape == (16, 16)
    assert 0 <= cam.heatmap.min() and cam.heatmap.max() <= 1

    dense_only = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Flatten(), keras.layers.Dense(2)])
    with pytest.raises(TransferLabError, match="has none"):
        explain.gradcam_layer_path(dense_only)
    with pytest.raises(TransferLabError, match="input size"):
        explain.gradcam(flat, np.zeros((10, 10, 3)))
    with pytest.raises(TransferLabError, match="RGB"):
        explain.gradcam(flat, np.zeros((SIZE, SIZE)))
    with pytest.raises(TransferLabError, match="out of range"):
        explain.gradcam(flat, np.zeros((SIZE, SIZE, 3)), class_index=7)


def test_gradcam_registry_classifier_and_fine_tuned_run_model(tmp_path):
    """keras.applications MobileNetV2 with its top (random weights: no download offline),
    and a fine-tuned transfer model on its base, saved and reloaded as a run would be."""
    import keras

    from core.nets.backbones import load_backbone, load_classifier
    from core.train.strategies import Augment, augmentation, build_head, build_transfer_model, unfreeze_top

    classifier, size = load_classifier("mobilenet_v2", weights=None)
    image = np.random.default_rng(1).integers(0, 255, (size, size, 3))
    cam = explain.gradcam(classifier, image)
    assert cam.layer.endswith("/out_relu") and cam.heatmap.shape == (7, 7)
    assert 0 <= cam.heatmap.min() and cam.heatmap.max() <= 1
    probs = np.asarray(classifier(image[None].astype("float32"), training=False))[0]
    assert probs[cam.class_index] == probs.max()  # the predicted class (random weights: near ties)

    bb = load_backbone("mobilenet_v2", weights=None, input_size=96)
    model = build_transfer_model(bb, "avg", build_head(bb.feature_shape[-1], 4, 16, 0.2),
                                 augmentation(Augment(), seed=0))
    unfreeze_top(bb.base, 10)
    model.save(tmp_path / "run.keras")
    loaded = keras.saving.load_model(tmp_path / "run.keras", safe_mode=True)
    small = image[:96, :96]
    a, b = explain.gradcam(model, small), explain.gradcam(loaded, small)
    assert a.layer == b.layer and a.layer.endswith("/out_relu") and a.heatmap.shape == (3, 3)
    np.testing.assert_allclose(a.heatmap, b.heatmap, atol=1e-4)


def reference_cam(maps_fn, scores_fn, image, class_index):
    """Grad-CAM written out by hand: feature map, class score, gradient, weighted sum."""
    import tensorflow as tf

    x = tf.convert_to_tensor(np.asarray(image, np.float32)[None])
    maps = maps_fn(x)
    with tf.GradientTape() as tape:
        tape.watch(maps)
        score = scores_fn(maps)[0, class_index]
    grads = tape.gradient(score, maps).numpy()[0]
    cam = np.maximum((maps.numpy()[0] * grads.mean(axis=(0, 1))).sum(axis=-1), 0)
    return cam / cam.max() if cam.max() > 0 else cam


def small_random_base(seed: int):
    """A random two-conv "backbone" as runs hold it: an InferenceModel over a functional base."""
    import keras

    from core.nets.layers import InferenceModel

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu", name="c2")(x)
    base = keras.Model(inputs, x, name="rand_base")
    return InferenceModel(base.input, base.output, name="rand_base")


def test_gradcam_equals_a_hand_built_reference(tmp_path):
    """Each model kind against Grad-CAM written out from its own parts, saved and reloaded
    with safe_mode=True: a transfer run (base + pool + head), the from-scratch CNN (flat
    with a nested head) and a plain keras.applications classifier."""
    import keras
    from keras import ops

    from core.nets.backbones import Backbone, get_spec
    from core.nets.layers import ChannelAffine
    from core.train.strategies import Augment, augmentation, build_head, build_scratch_model, build_transfer_model

    def linear(dense, h):
        return ops.matmul(h, dense.kernel) + dense.bias

    def reload(model, name):
        model.save(tmp_path / f"{name}.keras")
        return keras.saving.load_model(tmp_path / f"{name}.keras", safe_mode=True)

    rng = np.random.default_rng(5)
    pre = ChannelAffine(scale=(1 / 127.5,) * 3, offset=(-1.0,) * 3, name="preprocess")
    bb = Backbone(get_spec("mobilenet_v2"), None, small_random_base(3), pre, SIZE, "test")
    transfer = reload(build_transfer_model(bb, "max", build_head(6, 4, 5, 0.5), augmentation(Augment(), 2)), "t")
    head = transfer.get_layer("head")
    hidden = keras.Model(head.input, head.get_layer("head_dropout").output)

    scratch = reload(build_scratch_model(SIZE, 3, (4, 8), 6, 0.5, augmentation(Augment(), 2)), "s")
    s_head = scratch.get_layer("head")
    s_hidden = keras.Model(s_head.input, s_head.get_layer("head_dropout").output)
    s_front = keras.Model(scratch.input, scratch.get_layer("block2b_relu").output)

    keras.utils.set_random_seed(4)
    app = reload(keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3), alpha=0.35), "a")
    a_front = keras.Model(app.input, app.get_layer("out_relu").output)

    cases = {
        "transfer": (transfer, transfer.get_layer("rand_base"),
                     lambda x: transfer.get_layer("rand_base")(transfer.get_layer("preprocess")(x)),
                     lambda m: linear(head.get_layer("head_output"), hidden(ops.max(m, axis=(1, 2))))),
        "scratch": (scratch, scratch.get_layer("block2b_relu"),
                    lambda x: s_front(x, training=False),  # training=False: no augmentation
                    lambda m: linear(s_head.get_layer("head_output"), s_hidden(ops.mean(m, axis=(1, 2))))),
        "applications": (app, app.get_layer("out_relu"),
                         lambda x: a_front(x, training=False),
                         lambda m: linear(app.get_layer("predictions"), ops.mean(m, axis=(1, 2)))),
    }
    for name, (model, _, maps_fn, scores_fn) in cases.items():
        _, height, width, _ = model.input_shape
        image = rng.integers(0, 256, (height, width, 3)).astype(np.float32)
        classes = [None, 0, 1, 2] if int(model.output.shape[-1]) > 2 else [None, 0, 1]
        supported = 0
        for c in classes:
            cam = explain.gradcam(model, image, c)
            want = reference_cam(maps_fn, scores_fn, image, cam.class_index)
            assert cam.heatmap.shape == want.shape, name
            np.testing.assert_allclose(cam.heatmap, want, atol=1e-5, err_msg=f"{name}, class {c}")
            supported += int(want.max() > 0)
        assert supported >= 2, name  # real maps compared, not only all-zero ones
        scores = np.asarray(scores_fn(maps_fn(image[None])))[0]  # before the softmax: no float32 ties
        assert explain.gradcam(model, image).class_index == int(np.argmax(scores)), name


def test_gradcam_refuses_a_model_it_cannot_split():
    """A skip connection around the nested base: calling the stages in order would misread it."""
    import keras

    from core.nets.layers import ChannelAffine

    base = small_random_base(1)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = ChannelAffine(scale=(1 / 255.0,) * 3, offset=(0.0,) * 3, name="preprocess")(inputs)
    side = keras.layers.GlobalAveragePooling2D(name="side_pool")(x)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(base(x))
    joined = keras.layers.Concatenate(name="join")([pooled, side])
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="out")(joined))
    assert [layer.name for layer in explain.gradcam_layer_path(model)] == ["rand_base", "c2"]
    with pytest.raises(TransferLabError, match="do not form a chain"):
        explain.gradcam(model, np.zeros((SIZE, SIZE, 3)))


def test_overlay_and_colorize():
    heat = np.zeros((4, 4), np.float32)
    heat[0, 0] = 1.0
    image = np.full((40, 60, 3), 128, np.uint8)
    out = explain.overlay(image, heat)
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8
    # hot corner turns red, the cold far corner stays close to the photo
    assert out[0, 0, 0] > 150 and out[0, 0, 2] < 100
    assert np.abs(out[-1, -1].astype(int) - 128).max() < 60
    colours = explain.colorize(np.array([[0.0, 1.0, np.nan]]))
    assert colours.shape == (1, 3, 3) and colours[0, 1, 0] > colours[0, 1, 2]
