"""Learners: each trains an embedding; all are evaluated by nearest prototype over that embedding."""
from fewshot.learners.registry import create_learner, list_learners, register_learner  # noqa: F401
from fewshot.learners.base import Batch, Learner  # noqa: F401
