"""Similarity-preserving KD (Tung & Mori, ICCV 2019; method.md §4.5).

Taps: the levels of :attr:`TapInfo.levels`, paired by :func:`sekd.distill.base.paired_levels`
(DPDCRN to DPDCRN: level k with level k).
Per tap, G = V Vᵀ over the batch (``[B, B]``, V the tap flattened per item), each row
L2-normalised; loss per level ‖G_s − G_t‖²_F / B², summed over levels. Widths and bins may differ.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..base import DistillMethod, paired_levels
from ..registry import register


def batch_similarity(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, T, D]`` -> ``[B, B]`` row-normalised Gram matrix."""
    v = x.flatten(1)                  # (B, C·T·D)
    return F.normalize(v @ v.T, dim=1)


@register
class SP(DistillMethod):
    description = "similarity-preserving KD: Frobenius distance of row-normalised BxB Gram matrices"

    def compute(self, student_taps, teacher_taps):
        terms = {}
        for s_name, t_name in paired_levels(self.student_info, self.teacher_info):
            g_s, g_t = batch_similarity(student_taps[s_name]), batch_similarity(teacher_taps[t_name])
            terms[s_name] = (g_s - g_t).pow(2).sum() / g_s.shape[0] ** 2
        return sum(terms.values()), terms
