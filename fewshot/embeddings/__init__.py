"""Embedding files: a split's features written down, named by (class name, image rank); docs/embeddings.md."""
from fewshot.embeddings.file import (EmbeddingFile, build_embedding_file, embeddings_checksum,  # noqa: F401
                                     load_embedding_file)
