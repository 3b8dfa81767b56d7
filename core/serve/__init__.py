"""Serve: a trained run as a live classifier, exported (with parity checks) or quantized, and its
post-fit trust records (calibration, the "not sure" threshold, unlike data); the CLI's predictions."""

from core.faces import face

__all__ = ["abstain", "calibration", "export", "inference", "ood", "predict", "quantize", "trust"]
__getattr__, __dir__ = face(__name__, __all__, {})
