"""Training episodes of any fixed-shape protocol (`episodes.protocol`), for the training loop's BatchSource.

BatchSource draws many steps ahead with `sample_calls(calls, count)` and resumes by advancing the
generator `draws_per_call(count)` doubles a call, so a training sampler must draw a fixed number of
uniform doubles a call: EpisodeSampler (fixed, the default) and WithinParentSampler (within-parent) do.
Meta-Dataset's variable episodes are not offered for training: they draw a variable number of values
and their ragged support sets need a learner that takes per-class shot counts, which the episodic
learners (fixed (ways, shots) reshapes) do not.
"""
from __future__ import annotations

from fewshot.data.store import StoreSplit
from fewshot.episodes.sampler import EpisodeSampler
from fewshot.episodes.within_parent import WithinParentSampler
from fewshot.errors import FewshotError

TRAINING_PROTOCOLS = ("fixed", "within-parent")


def make_training_sampler(split: StoreSplit, episodes: dict, seed: int):
    """The sampler of config section `episodes` (ways, shots, queries, protocol) over a training split."""
    protocol = episodes.get("protocol", "fixed")
    if protocol == "fixed":
        return EpisodeSampler(split.class_counts, episodes["ways"], episodes["shots"], episodes["queries"], seed,
                              split.class_names, f"{split.name} split",
                              ("episodes.ways", "episodes.shots", "episodes.queries"))
    if protocol == "within-parent":
        hierarchy = split.hierarchy()
        return WithinParentSampler(split.class_counts, None if hierarchy is None else hierarchy[1], episodes["ways"],
                                   episodes["shots"], episodes["queries"], seed)
    raise FewshotError(f"episodes.protocol={protocol!r} cannot train; choose one of {', '.join(TRAINING_PROTOCOLS)} "
                       "(meta-dataset episodes are for evaluation: the episodic learners take fixed shapes)")
