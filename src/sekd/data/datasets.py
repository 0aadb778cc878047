"""Datasets: which (noisy, clean) pairs a data argument names, and torch datasets over them.

A data argument is one of
- a built corpus folder (holds ``manifest.csv``; rows are filtered by split),
- a manifest CSV itself (paths relative to its folder),
- a paired folder with ``noisy/`` and ``clean/`` holding files of the same names, or such
  a folder under ``<data>/<split>/``,
- a real corpus in its own layout: L3DAS23 Task 1, the DNS Challenge, VoiceBank-DEMAND
  (see layouts.py, which recognises them all).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import SekdError
from .layouts import scan
from .pairs import Pair, load_pair
from .pairs import read_channels, read_noisy  # noqa: F401  (imported from here by evaluation, enhancement, studies)

log = logging.getLogger("sekd")


def list_pairs(data: str | Path, split: str | None = "test") -> list[Pair]:
    """The (noisy, clean) pairs that ``data`` names; see the module docstring and layouts.py."""
    return scan(data).pairs(split)


def _rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (1 outside ``torch.distributed``)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def crop_seed(seed: int, epoch: int, index: int) -> int:
    """The crop offset's seed for one item of one epoch: a pure function, so a resumed run crops alike."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class EpochBatchSampler(Sampler):
    """Training batches as a pure function of (seed, epoch, position), for exact resumption.

    Epoch ``e`` is a permutation drawn from ``(seed, e)``; under ``torch.distributed`` each
    rank takes every world-size-th item of it, then whole batches (the tail is dropped: some
    KD methods need a fixed batch size). Each item comes as ``(index, crop seed)``.

    Every ``iter()`` starts at batch number ``position()`` counted from the first batch of
    epoch 0 (training passes the trainer's global step), so a run resumed mid-epoch goes on
    with the very batch it would have trained next, and a finished epoch moves to the next.
    """

    def __init__(self, items: int, batch_size: int, seed: int, position: Callable[[], int] = lambda: 0):
        self.items, self.batch_size, self.seed, self.position = items, batch_size, seed, position

    def __len__(self) -> int:
        return self.items // _rank_and_world()[1] // self.batch_size

    def epoch_batches(self, epoch: int) -> list[list[tuple[int, int]]]:
        rank, world = _rank_and_world()
        generator = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0]))
        order = torch.randperm(self.items, generator=generator).tolist()
        mine = order[: len(self) * self.batch_size * world][rank::world]
        mine = [(i, crop_seed(self.seed, epoch, i)) for i in mine]
        return [mine[b:b + self.batch_size] for b in range(0, len(mine), self.batch_size)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        per_epoch = len(self)
        if per_epoch == 0:
            return iter(())
        epoch, offset = divmod(self.position(), per_epoch)
        return iter(self.epoch_batches(epoch)[offset:])


class ResumableLoader(DataLoader):
    """A DataLoader over an :class:`EpochBatchSampler`, which tells Lightning it resumes exactly.

    The position is the trainer's global step (restored with the loops), so the state kept in
    the checkpoint is only what fixes the order: a resumed run with another seed or batch size
    is warned about instead of silently training on other batches.
    """

    def state_dict(self) -> dict:
        return {"seed": self.batch_sampler.seed, "batch_size": self.batch_sampler.batch_size,
                "items": self.batch_sampler.items}

    def load_state_dict(self, state: dict) -> None:
        if state != self.state_dict():
            log.warning("warning: resuming with another data order (checkpoint: %s, now: %s); the batches after "
                        "the resumed step differ from the interrupted run's", state, self.state_dict())


class ShardSampler(Sampler):
    """Every index once over all ranks (rank r takes r, r + world, ...): validation without padding."""

    def __init__(self, items: int):
        self.items = items

    def __len__(self) -> int:
        rank, world = _rank_and_world()
        return len(range(rank, self.items, world))

    def __iter__(self) -> Iterator[int]:
        rank, world = _rank_and_world()
        return iter(range(rank, self.items, world))


class CropDataset(Dataset):
    """Fixed-length crops for training; shorter files are zero-padded at the end.

    An item is ``(index, crop seed)`` (see :class:`EpochBatchSampler`), or a bare index,
    whose crop then depends on the index alone.
    """

    def __init__(self, pairs: list[Pair], crop_samples: int, in_channels: int = 1):
        if not pairs:
            raise SekdError("training data is empty")
        self.pairs, self.crop, self.in_channels = pairs, crop_samples, in_channels

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, item: int | tuple[int, int]):
        idx, seed = item if isinstance(item, tuple) else (item, crop_seed(0, 0, item))
        noisy, clean = load_pair(self.pairs[idx], self.in_channels)
        n = noisy.shape[1]
        if n >= self.crop:
            start = int(np.random.default_rng(seed).integers(0, n - self.crop + 1))
            noisy, clean = noisy[:, start:start + self.crop], clean[start:start + self.crop]
        else:
            noisy = np.pad(noisy, ((0, 0), (0, self.crop - n)))
            clean = np.pad(clean, (0, self.crop - n))
        return torch.from_numpy(noisy), torch.from_numpy(clean)


class WholeFileDataset(Dataset):
    """Whole files (batch size 1) for validation and evaluation."""

    def __init__(self, pairs: list[Pair], in_channels: int = 1):
        self.pairs, self.in_channels = pairs, in_channels

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, idx: int):
        noisy, clean = load_pair(self.pairs[idx], self.in_channels)
        return torch.from_numpy(noisy), torch.from_numpy(clean)
