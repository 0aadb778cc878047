"""Validation means over DDP ranks take only defined values: a rank whose files gave no PESQ neither
stalls the others nor pulls the mean."""

import math
from types import SimpleNamespace

import torch

from sekd.config import load_config
from sekd.data.datasets import EpochBatchSampler, ShardSampler
from sekd.engine.module import EnhancementModule


def test_means_over_ranks_count_defined_values_only():
    module = EnhancementModule(load_config(None, ["model.preset=tiny"]).to_dict())
    # Rank 0 scored two files (PESQ 2.0 and 3.0); rank 1 one file whose PESQ is undefined.
    ranks = [torch.tensor([10.0, 2, 5.0, 2, 1.6, 2], dtype=torch.float64),
             torch.tensor([4.0, 1, 0.0, 0, 0.9, 1], dtype=torch.float64)]
    all_reduce_sum = SimpleNamespace(reduce=lambda tensor, reduce_op: sum(ranks))
    module._trainer = SimpleNamespace(strategy=all_reduce_sum)
    logged = {}
    module.log = lambda key, value, **kwargs: logged.__setitem__(key, value)
    module._val_sums = ranks[0]
    module.on_validation_epoch_end()
    assert logged == {"val/si_sdr": 14.0 / 3, "val/pesq_wb": 2.5, "val/stoi": 2.5 / 3}

    ranks[0][2:4] = 0  # no PESQ anywhere: NaN, which ModelCheckpoint ranks worst
    module.on_validation_epoch_end()
    assert math.isnan(logged["val/pesq_wb"])


def test_batches_depend_on_seed_and_step_only(monkeypatch):
    sampler = EpochBatchSampler(10, 3, seed=7)
    assert len(sampler) == 3  # the tail of each epoch is dropped
    epoch0, epoch1 = sampler.epoch_batches(0), sampler.epoch_batches(1)
    assert epoch0 != epoch1 and all(len(b) == 3 for b in epoch0)
    sampler.position = lambda: 4  # the 5th batch overall: epoch 1, its second batch
    assert list(sampler) == epoch1[1:]
    assert EpochBatchSampler(10, 3, seed=7).epoch_batches(1) == epoch1  # a new process draws the same
    # Two ranks: disjoint halves of the same epoch, the same crop seed for an item on any rank.
    monkeypatch.setattr("sekd.data.datasets._rank_and_world", lambda: (0, 2))
    rank0 = EpochBatchSampler(10, 2, seed=7).epoch_batches(0)
    monkeypatch.setattr("sekd.data.datasets._rank_and_world", lambda: (1, 2))
    rank1 = EpochBatchSampler(10, 2, seed=7).epoch_batches(0)
    items0, items1 = {i for b in rank0 for i, _ in b}, {i for b in rank1 for i, _ in b}
    assert len(items0) == len(items1) == 4 and not items0 & items1
    assert list(ShardSampler(5)) == [1, 3]
