"""Training batches: a sampler's draws of (class, image rank) gathered from the store into a device batch.

The training loop asks `BatchSource.next` for each step's batches; it sits beside the samplers it drives.
Under torch.distributed every rank draws the whole global batch from the same seeded stream and keeps its
share (docs/distributed.md), so the global batch, and a checkpoint's sampler state, do not depend on the
number of processes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fewshot.data.store import MappedReader, StoreSplit
from fewshot.device import to_float_images
from fewshot.distributed import per_rank_share, rank, world_size
from fewshot.episodes.batches import PKSampler
from fewshot.episodes.training import make_training_sampler
from fewshot.errors import FewshotError
from fewshot.memory import check_fits


# Random keys drawn ahead at once (8 bytes each): at most this many, at most 64 steps' worth.
AHEAD_DRAWS = 1 << 19


@dataclass
class Batch:
    """A training batch on its device.

    kind "episode": images are N*K support then N*Q query images, class-major; labels are 0..N-1.
    kind "pk": P*K images class-major; labels are global training-class indices.
    """

    images: torch.Tensor
    labels: torch.Tensor
    kind: str
    ways: int = 0
    shots: int = 0
    queries: int = 0



class BatchSource:
    """Turns a sampler's (class, rank) draws into a device batch of the kind the learner wants.

    `kind` is the learner's `batch_kind`: "episode" (EpisodeSampler) or "pk" (PKSampler).
    """

    def __init__(self, kind: str, split: StoreSplit, config: dict, seed: int) -> None:
        self.split = split
        self.kind = kind
        if self.kind == "episode":
            e = config["episodes"]
            self.sampler = make_training_sampler(split, e, seed)  # episodes.protocol: fixed or within-parent
        else:
            b = config["batch"]
            self.sampler = PKSampler(split.class_counts, b["classes"], b["per_class"], seed)
        # Every rank draws the whole global batch from this same seeded stream and keeps its share (episodes
        # rank::world, or one block of classes), so the global batch is the same whatever the process count.
        self.rank, self.world = rank(), world_size()
        self.episodes_per_step = config["train"]["episodes_per_step"]
        if self.kind == "episode":
            self.batches_per_step = per_rank_share(self.episodes_per_step, "train.episodes_per_step")
        elif self.episodes_per_step != 1:
            raise FewshotError(f"train.episodes_per_step={self.episodes_per_step} is for episodic learners; "
                               f"{config['learner']} trains on PK batches: set batch.classes instead")
        else:
            self.batches_per_step = 1
            self.classes_per_rank = per_rank_share(config["batch"]["classes"], "batch.classes")
        self._check_step_fits(config)
        self._episodes: list = []
        self._buffer: np.ndarray | None = None
        self._reader: MappedReader | None = None
        self._ahead: np.ndarray | None = None  # rows of the episodes of steps drawn ahead (see _next_step)
        if self.kind == "episode":
            s = self.sampler
            self._episode_labels = np.concatenate([np.repeat(np.arange(s.ways), s.shots),
                                                   np.repeat(np.arange(s.ways), s.queries)])

    def _check_step_fits(self, config: dict) -> None:
        """Refuse a step whose images cannot fit in this machine's memory: the uint8 gather buffer and the
        float copy made from it (5 bytes a pixel) are host memory whatever the device. The network's outputs
        need far more, on the device; a step that does not fit there ends in a one-line out-of-memory error."""
        if self.kind == "episode":
            images = self.batches_per_step * self.sampler.ways * (self.sampler.shots + self.sampler.queries)
            fix = "lower episodes.ways, episodes.shots, episodes.queries or train.episodes_per_step"
        else:
            images = self.classes_per_rank * config["batch"]["per_class"]
            fix = "lower batch.classes or batch.per_class"
        height, width, channels = self.split.image_shape
        check_fits(5.0 * images * height * width * channels, f"a training step of {images:,} images", fix)

    def rows_and_labels(self) -> tuple[np.ndarray, np.ndarray, dict]:
        if self.kind == "episode":
            rows = self._local_episode()
            s = self.sampler
            return rows, self._episode_labels.copy(), {"ways": s.ways, "shots": s.shots, "queries": s.queries}
        classes, ranks = self.sampler.sample()
        mine = slice(self.rank * self.classes_per_rank, (self.rank + 1) * self.classes_per_rank)
        classes, ranks = classes[mine], ranks[mine]
        rows = (self.split.class_offsets[classes][:, None] + ranks).ravel()
        return rows, np.repeat(classes, ranks.shape[1]), {}

    def next(self, device: torch.device, channels_last: bool) -> Batch:
        rows, labels, shape = self.rows_and_labels()
        images = to_float_images(self.gather(rows), device, channels_last)
        return Batch(images, torch.from_numpy(labels).to(device), self.kind, **shape)

    def gather(self, rows: np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W, C) images of store `rows`, in a buffer that the next call overwrites.

        One copy from the memmap into a buffer kept across steps, so its pages are never faulted in again
        (np.take's mode="raise" would buffer `out` and copy twice; rows come from the sampler and are in
        range). Sorting the rows first bought nothing: an image is whole pages either way, and the
        permutation back cost a second copy (benchmarks/bench_sampling.py). to_float_images copies the result.
        On splits over 1 GB the reader hands the memory map's pages back every 64 MB read (bounded RSS).
        """
        if self._buffer is None or len(self._buffer) != len(rows):
            self._buffer = np.empty((len(rows), *self.split.image_shape), dtype=np.uint8)
        if self._reader is None:
            self._reader = MappedReader(self.split.images)
        self._reader.take(rows, out=self._buffer, known_in_range=True)
        return torch.from_numpy(self._buffer)

    def _local_episode(self) -> np.ndarray:
        """Store rows (support then query, class-major) of this rank's next episode."""
        if not self._episodes:
            first = self._next_step() * self.episodes_per_step
            self._episodes = [self._ahead[first + i] for i in range(self.rank, self.episodes_per_step, self.world)]
        return self._episodes.pop(0)

    def _next_step(self) -> int:
        """Index, in the block drawn ahead, of the next step's episodes.

        Steps are drawn many at a time with sampler.sample_calls, which gives exactly the episodes of one
        sample(episodes_per_step) call a step: a few numpy calls for a whole block instead of a dozen a step.
        """
        if self._ahead is None or self._ahead_used == len(self._ahead) // self.episodes_per_step:
            draws = self.sampler.draws_per_call(self.episodes_per_step)
            steps = max(1, min(64, AHEAD_DRAWS // draws))
            self._ahead_state = self.sampler.rng.bit_generator.state
            drawn = self.sampler.sample_calls(steps, self.episodes_per_step)
            support, query = drawn.rows(self.split.class_offsets)
            self._ahead = np.concatenate([support.reshape(len(drawn), -1), query.reshape(len(drawn), -1)], axis=1)
            self._ahead_used = 0
        self._ahead_used += 1
        return self._ahead_used - 1

    def state(self) -> dict:
        """The sampler's generator state after the steps taken so far (not after those drawn ahead)."""
        if self.kind != "episode" or self._ahead is None:
            return self.sampler.rng.bit_generator.state
        bits = np.random.PCG64()
        bits.state = self._ahead_state
        bits.advance(self._ahead_used * self.sampler.draws_per_call(self.episodes_per_step))
        return bits.state

    def set_state(self, state: dict) -> None:
        self.sampler.rng.bit_generator.state = state
        self._ahead, self._episodes = None, []
