"""Evaluation: confusion-matrix metrics and per-image counts (metrics.py), and the inference modes with evaluation
over a split, scored at each label's own resolution (predict.py)."""
