"""The backbones this process keeps loaded: one cache, shared by every page and analysis.

A frozen backbone is read-only once built, so one instance serves every
extraction, feature map and Grad-CAM in the process (the app's pages run in
threads of one process). Keyed by name, weights identity (file hash or random
seed) and input size, so pointing the app at another weights folder loads the
new files; the least recently used entry goes when more than ``KEEP`` are held.
Training that changes the weights (fine-tuning, from scratch, random weights) builds its own backbone;
heads on cached features take this one (``core.train.loop.Context.backbone``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from core.nets import backbones

KEEP = 2  # backbones held at once (each EfficientNet-Lite is 15-40 MB of weights plus its compiled passes)

_HELD: OrderedDict[tuple[str, str, int], Any] = OrderedDict()
_LOCK = threading.Lock()


def loaded_backbone(name, weights: Any = "imagenet", input_size: int | None = None):
    """``core.nets.backbones.load_backbone(name, weights, input_size)``, loaded once per process;
    ``name`` is a backbone name or its ``BackboneSpec`` (resolved once here, then passed on)."""
    spec = backbones.resolve(name)
    size = spec.size_for(input_size)
    key = (spec.name, spec.weights_id(weights, 0, size), size)
    with _LOCK:  # one load at a time: two sessions asking for the same backbone get one copy
        if key in _HELD:
            _HELD.move_to_end(key)
            return _HELD[key]
        bb = backbones.load_backbone(spec, weights, size)
        _HELD[key] = bb
        while len(_HELD) > KEEP:
            _HELD.popitem(last=False)
        return bb
