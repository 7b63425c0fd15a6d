"""Training batches that depend only on (seed, step, rank), so that a resumed run draws exactly the
batches an uninterrupted one would have drawn.

Each epoch is one shuffle of the whole set (torch's DistributedSampler with `set_epoch`), cut into
per-rank shards; step s of a run reads batch s mod (batches per epoch) of epoch
s // (batches per epoch). Small sets (the embedded digits) are decoded once into memory.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from bench.errors import UsageError

IN_MEMORY_BYTES = 512 * 2**20
"""Sets whose decoded float32 pixels fit in this many bytes are decoded once and kept in RAM."""


class InMemoryImages(Dataset):
    """Decoded images (N, C, R, R) in [-1, 1] and labels, read from a tensor."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])


def maybe_in_memory(dataset: Dataset, channels: int, resolution: int) -> Dataset:
    """`dataset` decoded into RAM when it is small enough, else unchanged."""
    size = len(dataset) * channels * resolution * resolution * 4
    if size > IN_MEMORY_BYTES or not hasattr(dataset, "stack"):
        return dataset
    images, labels = dataset.stack()
    return InMemoryImages(images, labels)


class StepBatches(Sampler[list[int]]):
    """Index lists of this rank's batches for steps `start` .. `stop - 1`."""

    def __init__(self, size: int, *, batch_per_rank: int, rank: int, world_size: int, seed: int,
                 start: int, stop: int) -> None:
        self.shard = DistributedSampler(range(size), num_replicas=world_size, rank=rank,
                                        shuffle=True, seed=seed, drop_last=True)
        self.batch = batch_per_rank
        self.per_epoch = len(self.shard) // batch_per_rank
        if self.per_epoch < 1:
            raise UsageError(
                f"the dataset has {size} images, too few for a batch of {batch_per_rank} per "
                f"process on {world_size} process(es); lower --batch-size")
        self.start, self.stop = start, stop

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def indices_for(self, step: int) -> list[int]:
        epoch, position = divmod(step, self.per_epoch)
        self.shard.set_epoch(epoch)
        order = list(iter(self.shard))
        return order[position * self.batch:(position + 1) * self.batch]

    def __iter__(self) -> Iterator[list[int]]:
        cached_epoch, order = None, []
        for step in range(self.start, self.stop):
            epoch, position = divmod(step, self.per_epoch)
            if epoch != cached_epoch:
                self.shard.set_epoch(epoch)
                order, cached_epoch = list(iter(self.shard)), epoch
            yield order[position * self.batch:(position + 1) * self.batch]


def step_loader(dataset: Dataset, sampler: StepBatches, num_workers: int) -> DataLoader:
    """A loader yielding (images, labels) for each step of `sampler`, in order."""
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                      persistent_workers=False, pin_memory=False)
