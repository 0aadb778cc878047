"""Attention-based fusion units (ReviewKD's ABF) and chains of them (method.md §3.5).

Two flavours share the structure: ``norm="instance"`` is the I²S-TFCKD unit (InstanceNorm +
PReLU after each convolution), ``norm="batch"`` is ReviewKD's ABF (BatchNorm, no activation).

A chain whose last output alone is read (I²S-TFCKD) never needs the earlier units at full
resolution: nearest interpolation reads only some of their positions. It computes each unit
at exactly the positions that reach the last unit, taking the InstanceNorm statistics of the
1×1 convolution from the input's channel covariance (mean = W·μ, var = diag(W Σ Wᵀ)), which
equal those over all positions. Same values and gradients, without the full-resolution
activations (257 bins at dec3) and their backward.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F


def _norm(channels: int, norm: str, prelu: str) -> list[nn.Module]:
    if norm == "instance":  # affine, as in the backbone; one PReLU slope per unit as released, or one per channel
        return [nn.InstanceNorm2d(channels, affine=True), nn.PReLU(channels if prelu == "channel" else 1)]
    return [nn.BatchNorm2d(channels)]


class FusionUnit(nn.Module):
    """x' = conv1×1(x); x' = a0·x' + a1·nearest(r) with [a0, a1] = σ(conv1×1([x'; r])); y = conv3×3(x').

    Returns ``(y, x')``; x' is the residual for the next unit. Without ``fuse`` the unit takes
    no residual (the first of a chain); with ``out_channels=None`` it has no output
    convolution and y is None (a unit whose output nobody reads). ``prelu`` (instance units):
    ``shared``, one slope per PReLU as in the released units, or ``channel``, one per channel.
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int | None, fuse: bool,
                 norm: Literal["instance", "batch"], prelu: Literal["shared", "channel"] = "shared"):
        super().__init__()
        self.inp = nn.Sequential(nn.Conv2d(in_channels, mid_channels, 1, bias=False),
                                 *_norm(mid_channels, norm, prelu))
        self.gate = nn.Sequential(nn.Conv2d(2 * mid_channels, 2, 1), nn.Sigmoid()) if fuse else None
        self.out = None if out_channels is None else nn.Sequential(
            nn.Conv2d(mid_channels, out_channels, 3, padding=1, bias=False), *_norm(out_channels, norm, prelu))

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None
                ) -> tuple[torch.Tensor | None, torch.Tensor]:
        x = self.inp(x)                                                   # (B, m, T, D)
        if self.gate is not None:
            r = F.interpolate(residual, size=x.shape[-2:], mode="nearest")  # (B, m, T, D)
            x = self.blend(x, r)
        return (None if self.out is None else self.out(x)), x            # (B, C_out, T, D), (B, m, T, D)

    def input_at(self, x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """``self.inp(x)`` read at frames ``rows`` and bins ``cols`` only: ``(B, m, len(rows), len(cols))``.

        InstanceNorm pools over every position of x, so its statistics come from x's per-item
        channel mean and covariance, mapped through the 1×1 convolution.
        """
        conv, norm, act = self.inp
        w = conv.weight[:, :, 0, 0]                                      # (m, C_in)
        flat = x.flatten(2)                                              # (B, C_in, N)
        mu = flat.mean(-1)                                               # (B, C_in)
        centred = flat - mu[..., None]
        cov = centred @ centred.transpose(1, 2) / flat.shape[-1]         # (B, C_in, C_in)
        mean = mu @ w.T                                                  # (B, m)
        var = torch.einsum("mc,bcd,md->bm", w, cov, w)                   # (B, m), biased as InstanceNorm's
        h = conv(x.index_select(2, rows).index_select(3, cols))          # (B, m, t, d)
        h = (h - mean[..., None, None]) * torch.rsqrt(var + norm.eps)[..., None, None]
        return act(h * norm.weight[:, None, None] + norm.bias[:, None, None])

    def blend(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """The gate of step 2: a0·x + a1·r, with r already at x's positions."""
        a = self.gate(torch.cat([x, residual], dim=1))                   # (B, 2, t, d)
        return a[:, :1] * x + a[:, 1:] * residual


def nearest_index(size_in: int, size_out: int, device) -> torch.Tensor:
    """Which input position ``F.interpolate(mode="nearest")`` reads for each output position."""
    grid = torch.arange(size_in, dtype=torch.float32, device=device)[None, None]
    return F.interpolate(grid, size=size_out, mode="nearest")[0, 0].long()


def _covers(index: torch.Tensor, size: int) -> bool:
    """Whether ``index`` is every position 0..size-1 in order (nothing to select)."""
    return index.numel() == size and bool((index == torch.arange(size, device=index.device)).all())


class FusionChain(nn.Module):
    """Units applied in order, each fusing its tap with the previous unit's residual.

    Returns the outputs of every unit (``every_output``, ReviewKD) or of the last one only
    (I²S-TFCKD's representative feature), as a list. ``out_channels`` is one width for all
    units or one per unit.
    """

    def __init__(self, in_channels: list[int], mid_channels: int, out_channels: int | list[int],
                 norm: Literal["instance", "batch"], every_output: bool,
                 prelu: Literal["shared", "channel"] = "shared"):
        super().__init__()
        last = len(in_channels) - 1
        outs = out_channels if isinstance(out_channels, list) else [out_channels] * len(in_channels)
        self.every_output = every_output
        # The position-selective path needs the unit's own InstanceNorm before anything pools.
        self.selective = not every_output and norm == "instance"
        self.units = nn.ModuleList(
            FusionUnit(c, mid_channels, out if every_output or i == last else None, fuse=i > 0, norm=norm, prelu=prelu)
            for i, (c, out) in enumerate(zip(in_channels, outs)))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.selective:
            return [self._last_output(feats)]
        outputs, residual = [], None
        for unit, x in zip(self.units, feats):
            y, residual = unit(x, residual)
            if y is not None:
                outputs.append(y)
        return outputs

    def _last_output(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """The last unit's output, each earlier unit computed only where the next one reads it."""
        device = feats[-1].device
        need = [None] * len(feats)  # (frames, bins) of unit i that the last unit depends on
        need[-1] = (torch.arange(feats[-1].shape[2], device=device), torch.arange(feats[-1].shape[3], device=device))
        for i in range(len(feats) - 2, -1, -1):
            (t_in, d_in), (t_out, d_out) = feats[i].shape[2:], feats[i + 1].shape[2:]
            need[i] = (nearest_index(t_in, t_out, device)[need[i + 1][0]],
                       nearest_index(d_in, d_out, device)[need[i + 1][1]])
        residual = None
        for (rows, cols), unit, x in zip(need, self.units, feats):
            everywhere = _covers(rows, x.shape[2]) and _covers(cols, x.shape[3])
            h = unit.inp(x) if everywhere else unit.input_at(x, rows, cols)  # (B, m, t, d)
            residual = h if unit.gate is None else unit.blend(h, residual)   # residual already at these positions
        return unit.out(residual)
