"""Which of the 1,000 ImageNet classes a dataset's class means, from its name.

"cats" maps to the five ImageNet cat classes, "dogs" to the 118 dog breeds, "fish"
to the fish: known groups first (index ranges checked against the names file by
their first and last name, or names), else ImageNet names that match the class
name as whole words. Zero-shot labelling (``core.analysis.labeling``) sums the
mapped probabilities; the Label page shows the suggestions for editing.
"""

from __future__ import annotations

import re
from typing import Sequence

from core.nets.backbones import imagenet_classes, resolve

# Groups of ImageNet-1k classes by index range, each range checked against the
# class-names file by its first and last name before it is trusted.
RANGE_GROUPS: dict[str, tuple[tuple[int, int, str, str], ...]] = {
    "dog": ((151, 268, "chihuahua", "mexican hairless"),),
    "cat": ((281, 285, "tabby", "egyptian cat"),),
    "big cat": ((286, 293, "cougar", "cheetah"),),
    "bird": ((7, 24, "cock", "great grey owl"), (80, 100, "black grouse", "black swan"),
             (127, 146, "white stork", "albatross")),
    "fish": ((0, 6, "tench", "stingray"), (389, 397, "barracouta", "puffer")),
    "snake": ((52, 68, "thunder snake", "sidewinder"),),
    "lizard": ((38, 48, "banded gecko", "komodo dragon"),),
    "turtle": ((33, 37, "loggerhead", "box turtle"),),
    "frog": ((30, 32, "bullfrog", "tailed frog"),),
    "spider": ((72, 77, "black and gold garden spider", "wolf spider"),),
    "insect": ((300, 326, "tiger beetle", "lycaenid"),),
    "beetle": ((300, 307, "tiger beetle", "weevil"),),
    "butterfly": ((321, 326, "admiral", "lycaenid"),),
    "bear": ((294, 297, "brown bear", "sloth bear"),),
    "wolf": ((269, 272, "timber wolf", "coyote"),),
    "fox": ((277, 280, "red fox", "grey fox"),),
    "monkey": ((365, 382, "orangutan", "squirrel monkey"),),
    "crab": ((118, 121, "dungeness crab", "king crab"),),
    "rabbit": ((330, 332, "wood rabbit", "angora"),),
    "elephant": ((385, 386, "indian elephant", "african elephant"),),
    "whale": ((147, 148, "grey whale", "killer whale"),),
}
# Groups resolved by name (names missing from a names file are simply left out).
NAME_GROUPS: dict[str, tuple[str, ...]] = {
    "car": ("ambulance", "beach wagon", "cab", "convertible", "jeep", "limousine", "minivan", "model t",
            "racer", "sports car", "police van", "pickup"),
    "truck": ("fire engine", "garbage truck", "pickup", "tow truck", "trailer truck", "moving van", "police van"),
    "boat": ("canoe", "catamaran", "container ship", "fireboat", "gondola", "lifeboat", "liner", "schooner",
             "speedboat", "trimaran", "yawl", "pirate", "aircraft carrier", "submarine", "paddlewheel"),
    "plane": ("airliner", "warplane", "airship", "wing"),
    "bicycle": ("mountain bike", "bicycle-built-for-two", "tricycle", "unicycle"),
    "flower": ("daisy", "yellow lady's slipper"),
    "mushroom": ("mushroom", "agaric", "gyromitra", "stinkhorn", "earthstar", "hen-of-the-woods", "bolete"),
    "fruit": ("granny smith", "strawberry", "orange", "lemon", "fig", "pineapple", "banana", "jackfruit",
              "custard apple", "pomegranate"),
}
ALIASES = {
    "puppy": "dog", "doggy": "dog", "doggo": "dog", "hound": "dog", "kitten": "cat", "kitty": "cat",
    "moggy": "cat", "feline": "cat", "canine": "dog", "ape": "monkey", "primate": "monkey", "automobile": "car",
    "ship": "boat", "airplane": "plane", "aeroplane": "plane", "aircraft": "plane", "bike": "bicycle",
    "bug": "insect", "songbird": "bird", "lion": "big cat", "tiger": "big cat",
}


def normalise(name: str) -> str:
    """Lower case, ``_`` and ``-`` as spaces, single spaces."""
    return " ".join(re.sub(r"[_\-]+", " ", str(name)).lower().split())


def singular(word: str) -> str:
    """A rough English singular, enough for class-folder names (cats, puppies, foxes)."""
    w = word
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith(("ches", "shes", "xes", "sses", "zes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def _phrase_forms(name: str) -> list[str]:
    phrase = normalise(name)
    words = phrase.split()
    forms = [phrase]
    if words:
        forms.append(" ".join(words[:-1] + [singular(words[-1])]))
    return list(dict.fromkeys(f for f in forms if f))


def _group(key: str, names: Sequence[str]) -> list[int] | None:
    key = ALIASES.get(key, key)
    lowered = [normalise(n) for n in names]
    if key in RANGE_GROUPS:
        out: list[int] = []
        for lo, hi, first, last in RANGE_GROUPS[key]:
            if hi < len(lowered) and lowered[lo] == first and lowered[hi] == last:
                out += list(range(lo, hi + 1))
        return out or None
    if key in NAME_GROUPS:
        wanted = {normalise(n) for n in NAME_GROUPS[key]}
        out = [i for i, n in enumerate(lowered) if n in wanted]
        return out or None
    return None


def suggest_imagenet(class_name: str, names: Sequence[str], limit: int = 50) -> list[int]:
    """ImageNet class indices a class called ``class_name`` most likely means.

    A known group first ("cats" -> tabby, tiger cat, Persian, Siamese and Egyptian
    cat; "dogs" -> the 118 dog breeds), else names that match the class name as
    whole words (its words too, for multi-word names). Empty when nothing matches.
    """
    lowered = [normalise(n) for n in names]
    forms = _phrase_forms(class_name)
    for form in forms:
        found = _group(form, names)
        if found:
            return found
    exact = [i for i, n in enumerate(lowered) if n in forms]
    pattern = re.compile(r"\b(" + "|".join(re.escape(f) for f in forms) + r")s?\b") if forms else None
    matches = [i for i, n in enumerate(lowered) if pattern and pattern.search(n) and i not in exact]
    out = exact + matches
    if not out:  # try each word of a multi-word name ("tabby cats" -> tabby, cat group)
        for word in normalise(class_name).split():
            if len(word) < 3:
                continue
            sub = suggest_imagenet(word, names, limit) if word != normalise(class_name) else []
            out += [i for i in sub if i not in out]
    return out[:limit] if limit else out


def default_mapping(classes: Sequence[str], names: Sequence[str]) -> dict[str, list[int]]:
    return {c: suggest_imagenet(c, names) for c in classes}


def imagenet_names(backbone: str | None = None) -> list[str]:
    """The 1,000 ImageNet class names (offline: the weights folder's names file or Keras' index)."""
    return imagenet_classes(resolve(backbone) if backbone else None)
