"""Run folders: what training writes and evaluation reads (config, summary, checkpoints, weights)."""
from fewshot.runs.checkpoint import load_checkpoint, load_model_state, save_checkpoint  # noqa: F401
from fewshot.runs.folder import checkpoint_name, load_run  # noqa: F401
