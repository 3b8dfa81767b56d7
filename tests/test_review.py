"""Reviewing suggested labels: the threshold sets what is added, a hand pick always wins."""

import pandas as pd

from core.analysis.review import LabelReview


def frame():
    return pd.DataFrame({"path": ["a.jpg", "b.jpg", "c.jpg"], "suggestion": ["cat", "dog", "cat"],
                         "confidence": [0.9, 0.55, 0.3]})


def test_threshold_takes_the_confident_and_leaves_out_the_rest():
    review = LabelReview()
    assert review.apply_threshold(frame(), 0.5) == {"a.jpg": "cat", "b.jpg": "dog", "c.jpg": None}
    assert review.chosen(frame()) == {"a.jpg": "cat", "b.jpg": "dog"}
    assert review.summary(frame(), 0.5) == (
        "**2** of 3 photos are at or above 50% and take their suggested label; the other 1 are left out "
        "unless you pick a class for them. Ready to add: **2** (cat 1, dog 1).")


def test_a_hand_pick_survives_a_new_threshold_and_added_photos_are_forgotten():
    review = LabelReview()
    review.apply_threshold(frame(), 0.5)
    review.pick("c.jpg", "dog")  # below the threshold, picked by hand
    review.pick("a.jpg", None)  # above it, left out by hand
    changed = review.apply_threshold(frame(), 0.95)
    assert changed == {"b.jpg": None}
    assert review.chosen(frame()) == {"c.jpg": "dog"}
    review.added(["c.jpg"])
    assert review.chosen(frame()) == {} and "c.jpg" not in review.touched
    assert review.apply_threshold(frame(), 0.0)["c.jpg"] == "cat"  # no longer a hand pick
