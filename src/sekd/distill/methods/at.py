"""Attention transfer (Zagoruyko & Komodakis, ICLR 2017; method.md §4.4).

Taps: the levels of :attr:`TapInfo.levels`, paired by :func:`sekd.distill.base.paired_levels`
(DPDCRN to DPDCRN: level k with level k). A tap's attention map is Σ_c |F_c|^p over
channels, ``[B, T, D]``, flattened per item and L2-normalised, so different widths compare
directly; a student map of another D is first resampled over bins to the teacher's
(pooled or interpolated, :func:`sekd.distill.base.resize_bins`, as the AT code
interpolates maps of different sizes). Loss: sum over levels.

Paper vs released code (as torchdistill's ``ATLoss(mode=...)``): ``mode: code`` (default)
is the mean squared difference of the normalised maps, as in the authors' code;
``mode: paper`` is the L2 norm of the difference per item, averaged over the batch (the
paper's β/2 factor is left to the trainer's λ).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch.nn import functional as F

from ..base import DistillMethod, paired_levels, resize_bins
from ...errors import SekdError
from ..registry import register


@dataclass
class ATOptions:
    p: float = 2.0                         # exponent of the attention map Σ_c |F_c|^p
    mode: Literal["code", "paper"] = "code"

    def __post_init__(self):
        if self.p <= 0:
            raise SekdError(f"option 'p' of distillation method 'at' must be positive; got {self.p}")


def attention_map(x: torch.Tensor, p: float, bins: int | None = None) -> torch.Tensor:
    """``[B, C, T, D]`` -> ``[B, T·bins]`` (bins defaults to D), unit L2 norm per item."""
    energy = x.abs().pow(p).mean(1, keepdim=True)                 # (B, 1, T, D)
    return F.normalize(resize_bins(energy, bins or x.shape[-1]).flatten(1), dim=1)


@register
class AT(DistillMethod):
    description = "attention transfer: L2 between normalised channel-energy maps"
    Options = ATOptions

    def compute(self, student_taps, teacher_taps):
        terms = {}
        for s_name, t_name in paired_levels(self.student_info, self.teacher_info):
            target = attention_map(teacher_taps[t_name], self.options.p)
            diff = attention_map(student_taps[s_name], self.options.p, teacher_taps[t_name].shape[-1]) - target
            terms[s_name] = diff.pow(2).mean() if self.options.mode == "code" else diff.norm(dim=1).mean()
        return sum(terms.values()), terms
