"""Which frames each process trains on, iteration by iteration, and how batches reach it.

The draws are made for the GLOBAL batch and then sliced by rank, so that N processes with
``global_batch / N`` frames each see exactly the frames a single process with the whole global
batch would see (no duplicates between processes, results independent of N), and an epoch can
be resumed at any iteration. Evaluation shards frames by rank (:func:`shard_indices`); every
batch goes to the process's device through :func:`move_to_device`.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

MODES = ("with_replacement", "shuffle")


def epoch_draws(num_frames: int, global_batch: int, iters: int, *, mode: str, seed: int, epoch: int) -> np.ndarray:
    """The frame indices of one epoch for the whole global batch.

    Args:
        num_frames: dataset length (> 0).
        global_batch: frames per iteration, summed over processes.
        iters: iterations in the epoch.
        mode: ``"with_replacement"`` — each frame drawn uniformly and independently (the paper's
            sampler); ``"shuffle"`` — concatenated random permutations (each frame once per pass).
        seed, epoch: the draws are a pure function of ``(seed, epoch)``.

    Returns:
        ``(iters, global_batch) int64``; row ``i`` is iteration ``i``'s global batch.
    """
    if num_frames < 1:
        raise ValueError("cannot sample from an empty dataset")
    if mode not in MODES:
        raise ValueError(f"sampler {mode!r}: expected one of {MODES}")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch])))
    total = iters * global_batch
    if mode == "with_replacement":
        flat = rng.integers(0, num_frames, size=total, dtype=np.int64)
    else:
        passes = -(-total // num_frames)
        flat = np.concatenate([rng.permutation(num_frames) for _ in range(passes)])[:total].astype(np.int64)
    return flat.reshape(iters, global_batch)


class GlobalBatchSampler(Sampler[list[int]]):
    """Batch sampler yielding this rank's slice of each global batch.

    Rank ``r`` of ``W`` gets columns ``[r*b, (r+1)*b)`` of :func:`epoch_draws`, ``b = global_batch
    / W``. Call :meth:`set_epoch` before each epoch (``start_iter`` skips the first iterations
    when resuming mid-epoch). Use as ``DataLoader(dataset, batch_sampler=...)``.
    """

    def __init__(
        self,
        num_frames: int,
        global_batch: int,
        iters_per_epoch: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        mode: str = "with_replacement",
        seed: int = 0,
    ) -> None:
        if global_batch % world_size != 0:
            raise ValueError(f"global batch {global_batch} is not divisible by the {world_size} processes")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
        self.num_frames = num_frames
        self.global_batch = global_batch
        self.iters_per_epoch = iters_per_epoch
        self.rank = rank
        self.world_size = world_size
        self.mode = mode
        self.seed = seed
        self.local_batch = global_batch // world_size
        self.epoch = 0
        self.start_iter = 0

    def set_epoch(self, epoch: int, start_iter: int = 0) -> None:
        """Select the 0-based ``epoch`` and the first iteration to yield."""
        if not 0 <= start_iter <= self.iters_per_epoch:
            raise ValueError(f"start_iter {start_iter} outside 0..{self.iters_per_epoch}")
        self.epoch = epoch
        self.start_iter = start_iter

    def __len__(self) -> int:
        return self.iters_per_epoch - self.start_iter

    def __iter__(self) -> Iterator[list[int]]:
        draws = epoch_draws(
            self.num_frames, self.global_batch, self.iters_per_epoch, mode=self.mode, seed=self.seed, epoch=self.epoch
        )
        lo = self.rank * self.local_batch
        mine = draws[self.start_iter :, lo : lo + self.local_batch]
        for row in mine:
            yield row.tolist()


def shard_indices(num_frames: int, rank: int, world_size: int) -> list[int]:
    """Evaluation sharding without duplicates or padding: rank ``r`` takes ``r, r+W, r+2W, ...``."""
    return list(range(rank, num_frames, world_size))


def loader_generator(seed: int, rank: int) -> torch.Generator:
    """A private generator for a DataLoader (worker seeds), so that creating a loader iterator
    never consumes the global torch RNG that the model's own sampling uses."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, rank, 7]).generate_state(1)[0]))


def move_to_device(batch: dict, device: torch.device) -> dict:
    """Tensors of ``batch`` moved to ``device`` (non-blocking); other values (ids) unchanged."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
