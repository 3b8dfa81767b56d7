"""The one linear probe on L2-normalised features: separability, the flip test and the learning curve
measure with the same estimator, so their figures agree."""

from __future__ import annotations

PROBE_C = 10.0  # inverse regularisation: features are unit vectors, so a weak penalty fits


def linear_probe():
    """An unfitted logistic regression with the probe's settings (scikit-learn is imported here, when
    a probe is needed, not at the start of every importer)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=PROBE_C, max_iter=2000)
