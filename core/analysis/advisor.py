"""The 2x2 strategy advisor: dataset size x similarity to ImageNet, both measured.

Size is counted (images per class in the train split). Similarity is measured:
a cross-validated linear probe and a leave-one-out 5-NN vote on ImageNet
features of a seeded sample (``core.analysis.separability``), normalised against
chance. Features come from the feature cache, so asking again is cheap.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from core.analysis.separability import separability
from core.data.dataset import Dataset, subset

SMALL_PER_CLASS = 1000  # under this many training images a class, a dataset counts as small
SIMILAR_SKILL = 0.8  # probe skill over chance ((acc - chance) / (1 - chance)) that counts as similar
SAMPLE_PER_CLASS = 60

CELLS = {
    ("small", "similar"): ("feature_extraction",
                           "Train a small head on cached ImageNet features: the features already "
                           "separate the classes, and too few images would overfit a fine-tuned base."),
    ("large", "similar"): ("fine_tune",
                           "Extract features, then fine-tune the top few layers at a low learning rate: "
                           "enough data to adapt the last blocks without forgetting."),
    ("small", "different"): ("frozen_augment",
                             "Keep the base frozen and train with augmentation; features transfer less "
                             "well, and there is too little data to retrain deep layers safely."),
    ("large", "different"): ("fine_tune",
                             "Fine-tune many layers (or train from scratch): the data is plentiful and far "
                             "from ImageNet, so the upper layers must relearn."),
}


@dataclass
class Advice:
    size: str  # "small" | "large"
    similarity: str  # "similar" | "different"
    strategy: str
    unfreeze_layers: int
    reasons: list[str] = field(default_factory=list)
    figures: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self):
        """The 2x2 table as a DataFrame (rows size, columns similarity) with this cell marked."""
        import pandas as pd

        from core.train import registry

        rows = {}
        for size in ("small", "large"):
            rows[size] = {
                sim: registry.label(CELLS[(size, sim)][0]) + (" ◀ this dataset" if (size, sim) == (self.size, self.similarity) else "")
                for sim in ("similar", "different")
            }
        return pd.DataFrame(rows).T.rename_axis("dataset size")


def advise(ds: Dataset, backbone: str = "efficientnet_lite0", weights="imagenet",
           sample_per_class: int = SAMPLE_PER_CLASS, seed: int = 0, progress=None) -> Advice:
    """Recommend a strategy for ``ds`` with the measured figures and reasons in plain words."""
    from core.features.dataset import cached_extract
    from core.nets import backbones
    from core.nets.loaded import loaded_backbone

    counts = ds.counts()["train"]
    per_class = min(counts.values()) if counts else 0
    size = "small" if per_class < SMALL_PER_CLASS else "large"

    sample = subset(ds, sample_per_class, seed, splits=("train",))
    feats = cached_extract(sample, backbone, split="train", weights=weights, progress=progress)
    X, y = feats.usable()
    sep = separability(np.asarray(X), y, seed=seed)
    chance = sep["chance"]
    skill = (sep["probe_cv_accuracy"] - chance) / (1 - chance) if chance < 1 else 0.0
    similarity = "similar" if skill >= SIMILAR_SKILL else "different"
    strategy, why = CELLS[(size, similarity)]

    depth = len(loaded_backbone(backbone, weights).base.layers) if strategy == "fine_tune" else 0
    share = 0.1 if similarity == "similar" else 0.4
    unfreeze = int(round(depth * share)) if strategy == "fine_tune" else 0
    spec = backbones.get_spec(backbone)
    reasons = [
        f"Size: the smallest class has {per_class:,} training images "
        f"({'under' if size == 'small' else 'at least'} {SMALL_PER_CLASS:,} a class), so the dataset counts as {size}.",
        f"Similarity: on {len(y)} sampled images, a linear probe on {spec.display_name} ImageNet features "
        f"separates the classes with {sep['probe_cv_accuracy']:.1%} cross-validated accuracy "
        f"({sep['probe_folds']}-fold; 5-NN leave-one-out: {sep['knn_loo_accuracy']:.1%}; chance: {chance:.1%}), "
        f"a skill of {skill:.2f} over chance, "
        f"so the data looks {'similar to' if similarity == 'similar' else 'different from'} ImageNet "
        f"(threshold {SIMILAR_SKILL}).",
        why,
    ]
    if unfreeze:
        reasons.append(f"Unfreeze about the top {unfreeze} of {depth} layers ({share:.0%}), BatchNorm kept frozen.")
    figures = {"train_images": int(sum(counts.values())), "smallest_class": int(per_class),
               "sample_size": int(len(y)), "chance": chance, "skill": skill, "backbone": backbone, **sep}
    return Advice(size, similarity, strategy, unfreeze, reasons, figures)
