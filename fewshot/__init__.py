"""fewshot: a few-shot learning benchmark harness.

The Python API (fewshot/api.py; README, "Python API") is available here, loaded on first use, so that
`import fewshot` imports neither torch nor pandas:

    import fewshot
    store = fewshot.prepare("synthetic", "work/synthetic")
    summary = fewshot.train_run("protonet", store, "work/run", {"train.steps": 200})
    records = fewshot.evaluate_run("work/run", fewshot.make_episodes(store, ways=5, shots=1, count=500))
    print(fewshot.table(records))
"""

__version__ = "0.1.0"

# The API's names (fewshot.api.__all__), kept here so that reading them needs no import.
__all__ = ["prepare", "Store", "load_config", "make_episodes", "load_episodes", "train_run", "load_learner",
           "evaluate_run", "embed", "load_records", "records_frame", "table", "compare", "FewshotError"]


def __getattr__(name: str):
    """Module-level lazy loading (PEP 562): an API name imports fewshot.api the first time it is read."""
    if name in __all__:
        import importlib

        return getattr(importlib.import_module("fewshot.api"), name)
    raise AttributeError(f"module 'fewshot' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
