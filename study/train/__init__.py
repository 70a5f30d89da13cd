"""Training: the objective (losses.py), SGD groups and the poly schedule (optim.py), checkpoints
(checkpoint.py), the training loop (loop.py) and torchrun support (distributed.py)."""
