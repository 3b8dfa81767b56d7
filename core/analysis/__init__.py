"""Analysis: findings about a dataset: the advisor, zero/few-shot labelling, label issues,
separability, the label budget, embedding maps, the review of labels, speed."""

from core.faces import face

_NAMES = {"LabelReview": "review"}
__all__ = ["advisor", "embedding", "imagenet_mapping", "label_budget", "label_issues", "labeling", "review",
           "separability", "speed", *_NAMES]
__getattr__, __dir__ = face(__name__, __all__, _NAMES)
