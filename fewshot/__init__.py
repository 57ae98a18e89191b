"""fewshot: a few-shot learning benchmark harness."""

__version__ = "0.1.0"
