"""Transfer Lab benchmarks: ``python -m benchmarks [--quick] [--only GROUPS]``.

Groups: ``speed`` (ratios measured side by side), ``accuracy`` (strategy x
backbone on cats_vs_dogs), ``app`` (start-up time, job memory), ``scale``
(extraction time and memory against dataset size). See ``benchmarks/README.md``.
"""
