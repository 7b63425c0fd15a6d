"""Parameter counts: total = trainable + frozen, shared parameters once, MiB of parameters only."""

from __future__ import annotations

import torch
from torch import nn

from bench.measure.params import count_params


class Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(10, 5)  # 55 trainable
        self.b = self.a  # shared: counted once
        self.table = nn.Parameter(torch.zeros(7), requires_grad=False)  # 7 frozen
        self.register_buffer("stats", torch.zeros(1000))  # a buffer: not a parameter


def test_counts_and_storage():
    counts = count_params(Model())
    assert (counts.total, counts.trainable, counts.frozen) == (62, 55, 7)
    assert counts.mib == 62 * 4 / 2**20


def test_storage_follows_dtype():
    assert count_params(Model().double()).mib == 62 * 8 / 2**20
