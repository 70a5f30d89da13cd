"""Training: the objective (losses.py), SGD groups and the poly schedule (optim.py), checkpoints
(checkpoint.py), the training loop (loop.py), torchrun support (distributed.py) and seeds of one variant trained as
one packed network (packed.py)."""
