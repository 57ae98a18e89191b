"""The training loop, checkpoints, and (in distributed.py) multi-process training."""
