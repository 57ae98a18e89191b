"""Episodes: the seeded N-way K-shot sampler, fixed episode files, PK batches."""
