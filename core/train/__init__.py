"""Train: every strategy declared once (the registry) and fitted end to end, with the plans that
queue them, the pixel baseline, precision, evaluation and the augmentation decision."""

from core.faces import face

_NAMES = {"Augment": "strategies", "FILLS": "strategies", "FLIPS": "strategies", "OPTIMIZERS": "strategies",
          "MAX_FOLDS": "folds", "load_dataset": "loop", "uses_backbone": "registry"}
__all__ = ["callbacks", "distribute", "evaluation", "fit", "flips", "folds", "frozen", "heads", "loop", "methods",
           "pixels", "plans", "precision", "registry", "strategies", *_NAMES]
__getattr__, __dir__ = face(__name__, __all__, _NAMES)
