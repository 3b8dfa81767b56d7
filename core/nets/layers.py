"""Custom Keras layers that saved models need; registered so that
``keras.saving.load_model(..., safe_mode=True)`` loads them without lambdas."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="transfer_lab")
class ChannelAffine(keras.layers.Layer):
    """Per-channel ``x * scale + offset`` after an optional RGB->BGR flip.

    Every ``keras.applications`` preprocess mode ("tf", "torch", "caffe") and the
    mean/std of a local manifest is such an affine map, so one weightless layer
    puts a backbone's exact preprocessing inside any model built on it.
    """

    def __init__(self, scale=(1.0, 1.0, 1.0), offset=(0.0, 0.0, 0.0), reverse_channels=False, **kwargs):
        super().__init__(**kwargs)
        self.scale = [float(s) for s in scale]
        self.offset = [float(o) for o in offset]
        self.reverse_channels = bool(reverse_channels)

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.reverse_channels:
            x = ops.flip(x, axis=-1)
        return x * ops.convert_to_tensor(self.scale, self.compute_dtype) + ops.convert_to_tensor(
            self.offset, self.compute_dtype
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "scale": self.scale,
            "offset": self.offset,
            "reverse_channels": self.reverse_channels,
        }


@keras.saving.register_keras_serializable(package="transfer_lab")
class InferenceModel(keras.Model):
    """A functional model (a backbone's base) that always runs its layers in inference mode.

    Keras 3 passes the outer ``training`` flag of ``fit`` into a nested model even where the
    graph called it with ``training=False`` (``keras.src.models.functional.operation_fn``), so
    ``base(x, training=False)`` alone would update BatchNorm statistics of an unfrozen base and
    switch on its stochastic-depth Dropout. Built as ``InferenceModel(base.input, base.output)``,
    it shares the base's layers and weights.
    """

    def call(self, inputs, training=None, mask=None, **kwargs):
        return super().call(inputs, training=False, mask=mask, **kwargs)
