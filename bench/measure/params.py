"""Parameter counts and parameter storage size."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from bench.units import MIB


@dataclass(frozen=True)
class ParamCount:
    """Parameter counts of a model.

    total = trainable + frozen = `sum(p.numel() for p in model.parameters())` (the convention of the
    paper's Figure 4: frozen parameters included; a parameter shared by several modules is counted
    once). frozen = parameters with `requires_grad=False`. `mib` = bytes of the parameters only, at
    their current dtype, in MiB (2**20 bytes); buffers (e.g. norm statistics) are NOT included.
    """

    total: int
    trainable: int
    frozen: int
    mib: float


def count_params(model: nn.Module) -> ParamCount:
    """Count total/trainable/frozen parameters and their storage in MiB (parameters only)."""
    trainable = frozen = nbytes = 0
    for p in model.parameters():
        n = p.numel()
        if p.requires_grad:
            trainable += n
        else:
            frozen += n
        nbytes += n * p.element_size()
    return ParamCount(trainable + frozen, trainable, frozen, nbytes / MIB)
