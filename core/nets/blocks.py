"""Features from an earlier block of a backbone, not only from its top.

The classic advice for small data unlike ImageNet: the top layers encode
ImageNet's own classes, earlier ones more generic edges and textures, so a head
on an earlier block can transfer better. ``truncate`` cuts a loaded ``Backbone``
at a named layer into another ``Backbone`` (same preprocessing, weights shared),
whose weights id names the layer: cached features of the cut never mix with the top's.
"""

from __future__ import annotations

from dataclasses import replace


def _spatial(layer) -> tuple[int, int] | None:
    shape = getattr(layer, "output", None)
    shape = getattr(shape, "shape", None)
    if shape is None or len(shape) != 4 or shape[1] is None:
        return None
    return int(shape[1]), int(shape[2])


def block_outputs(bb) -> list[str]:
    """One layer of ``bb.base`` per spatial resolution, shallow to deep (a stage's output: the
    last residual ``Add`` at that resolution when there is one, else its last layer), without
    the top resolution (the base's own output)."""
    import keras

    # padding before a strided convolution changes the shape but ends no stage
    skip = (keras.layers.InputLayer, keras.layers.ZeroPadding2D)
    stages: dict[tuple[int, int], dict] = {}
    for layer in bb.base.layers:
        here = None if isinstance(layer, skip) else _spatial(layer)
        if here is None:
            continue
        stage = stages.setdefault(here, {"last": None, "add": None})
        stage["last"] = layer.name
        if isinstance(layer, keras.layers.Add):
            stage["add"] = layer.name
    names = [st["add"] or st["last"] for st in stages.values()]
    return names[:-1]


def earlier_block(bb) -> str:
    """The output of the stage before the last (stride 16 in most ImageNet networks):
    generic enough to transfer, small enough to pool cheaply. ``""`` when there is none."""
    blocks = block_outputs(bb)
    return blocks[-1] if blocks else ""


def truncate(bb, layer: str):
    """``bb`` cut at ``layer`` of its base; raises ``ValueError`` naming the known blocks."""
    import keras

    from core.nets.layers import InferenceModel  # lazy: starts TensorFlow

    names = [lyr.name for lyr in bb.base.layers]
    if layer not in names:
        known = ", ".join(block_outputs(bb)) or "none"
        raise ValueError(f"layer {layer!r} is not in {bb.spec.display_name}; its block outputs: {known}")
    base = InferenceModel(bb.base.input, bb.base.get_layer(layer).output, name=f"{bb.base.name}_{layer}")
    inputs = keras.Input((bb.input_size, bb.input_size, 3), name="pixels")
    model = keras.Model(inputs, base(bb.preprocess(inputs)), name=f"{bb.spec.name}_{layer}_features")
    return replace(bb, model=model, base=base, weights_id=f"{bb.weights_id}@{layer}", _forwards={})
