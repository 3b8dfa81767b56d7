"""Class names to ImageNet classes: known groups, checked ranges, whole-word matches."""

from __future__ import annotations

from core.analysis import imagenet_mapping
from tests import tiny_backbone


def test_suggestions_from_names():
    names = tiny_backbone.class_names()
    assert imagenet_mapping.suggest_imagenet("cats", names) == [281, 282, 283, 284, 285]
    assert imagenet_mapping.suggest_imagenet("Cat", names) == [281, 282, 283, 284, 285]
    assert imagenet_mapping.suggest_imagenet("kittens", names) == [281, 282, 283, 284, 285]
    assert imagenet_mapping.suggest_imagenet("dogs", names) == list(range(151, 269))
    assert imagenet_mapping.suggest_imagenet("puppies", names) == list(range(151, 269))
    assert imagenet_mapping.suggest_imagenet("fish", names) == [0, 1, 2, 3, 4, 5, 6, *range(389, 398)]
    assert imagenet_mapping.suggest_imagenet("goldfish", names) == [1]
    assert imagenet_mapping.suggest_imagenet("Egyptian_cat", names) == [285]
    assert imagenet_mapping.suggest_imagenet("sports-cars", names) == [817]
    assert imagenet_mapping.suggest_imagenet("cars", names) == [511, 817]  # name group, resolved by name
    assert imagenet_mapping.suggest_imagenet("tabby cats", names) == [281, 282, 283, 284, 285]  # word by word
    assert imagenet_mapping.suggest_imagenet("red foxes", names) == []
    assert imagenet_mapping.suggest_imagenet("xyzzy", names) == []
    mapping = imagenet_mapping.default_mapping(["cats", "dogs"], names)
    assert mapping == {"cats": [281, 282, 283, 284, 285], "dogs": list(range(151, 269))}


def test_range_groups_are_only_trusted_when_the_names_file_matches():
    shifted = ["x"] + tiny_backbone.class_names()[:-1]  # every name one index later
    found = imagenet_mapping.suggest_imagenet("cat", shifted)
    assert found and all("cat" in shifted[i] for i in found)  # fell back to matching names
    assert 281 not in found or shifted[281] == "tabby"


def test_singular_and_normalise():
    assert [imagenet_mapping.singular(w) for w in ["cats", "puppies", "foxes", "glass", "bus", "dog"]] == [
        "cat", "puppy", "fox", "glass", "bus", "dog"]
    assert imagenet_mapping.normalise("  Tiger_Cat-x ") == "tiger cat x"
