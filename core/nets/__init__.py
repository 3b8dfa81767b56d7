"""Nets: the backbones (registry, weights), their forward passes on an engine, one loaded copy per
process, and what is drawn of them (layers, feature maps, Grad-CAM)."""

from core.faces import face

_NAMES = {"DEFAULT_BACKBONE": "backbones", "default_backbone": "backbones", "get_spec": "backbones",
          "list_backbones": "backbones", "missing_weights_message": "backbones", "weights_location": "backbones",
          "POOLINGS": "forward", "loaded_backbone": "loaded"}
__all__ = ["backbones", "blocks", "engine", "explain", "forward", "layers", "loaded", *_NAMES]
__getattr__, __dir__ = face(__name__, __all__, _NAMES)
