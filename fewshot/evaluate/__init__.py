"""Evaluation over cached embeddings: embed once, score every episode as batched tensor operations."""
