"""Frozen ImageNet features: the backbone's maps cached once per image (cache.py), read as a data set
(dataset.py), and a PSPNet's pyramid and heads trained on them (head.py)."""
