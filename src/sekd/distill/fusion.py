"""Attention-based fusion units (ReviewKD's ABF) and chains of them (method.md §3.5).

Two flavours share the structure: ``norm="instance"`` is the I²S-TFCKD unit (InstanceNorm +
PReLU after each convolution), ``norm="batch"`` is ReviewKD's ABF (BatchNorm, no activation).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F


def _norm(channels: int, norm: str) -> list[nn.Module]:
    if norm == "instance":
        return [nn.InstanceNorm2d(channels, affine=True), nn.PReLU(channels)]  # affine, as in the backbone
    return [nn.BatchNorm2d(channels)]


class FusionUnit(nn.Module):
    """x' = conv1×1(x); x' = a0·x' + a1·nearest(r) with [a0, a1] = σ(conv1×1([x'; r])); y = conv3×3(x').

    Returns ``(y, x')``; x' is the residual for the next unit. Without ``fuse`` the unit takes
    no residual (the first of a chain); with ``out_channels=None`` it has no output
    convolution and y is None (a unit whose output nobody reads).
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int | None, fuse: bool,
                 norm: Literal["instance", "batch"]):
        super().__init__()
        self.inp = nn.Sequential(nn.Conv2d(in_channels, mid_channels, 1, bias=False), *_norm(mid_channels, norm))
        self.gate = nn.Sequential(nn.Conv2d(2 * mid_channels, 2, 1), nn.Sigmoid()) if fuse else None
        self.out = None if out_channels is None else nn.Sequential(
            nn.Conv2d(mid_channels, out_channels, 3, padding=1, bias=False), *_norm(out_channels, norm))

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None
                ) -> tuple[torch.Tensor | None, torch.Tensor]:
        x = self.inp(x)                                                   # (B, m, T, D)
        if self.gate is not None:
            r = F.interpolate(residual, size=x.shape[-2:], mode="nearest")  # (B, m, T, D)
            a = self.gate(torch.cat([x, r], dim=1))                       # (B, 2, T, D)
            x = a[:, :1] * x + a[:, 1:] * r
        return (None if self.out is None else self.out(x)), x            # (B, C_out, T, D), (B, m, T, D)


class FusionChain(nn.Module):
    """Units applied in order, each fusing its tap with the previous unit's residual.

    Returns the outputs of every unit (``every_output``, ReviewKD) or of the last one only
    (I²S-TFCKD's representative feature), as a list.
    """

    def __init__(self, in_channels: list[int], mid_channels: int, out_channels: int,
                 norm: Literal["instance", "batch"], every_output: bool):
        super().__init__()
        last = len(in_channels) - 1
        self.units = nn.ModuleList(
            FusionUnit(c, mid_channels, out_channels if every_output or i == last else None, fuse=i > 0, norm=norm)
            for i, c in enumerate(in_channels))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        outputs, residual = [], None
        for unit, x in zip(self.units, feats):
            y, residual = unit(x, residual)
            if y is not None:
                outputs.append(y)
        return outputs
