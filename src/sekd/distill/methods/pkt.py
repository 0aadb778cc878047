"""Probabilistic knowledge transfer (Passalis & Tefas, ECCV 2018; method.md §4.6).

Taps: the levels of :attr:`TapInfo.levels`, paired by :func:`sekd.distill.base.paired_levels`
(DPDCRN to DPDCRN: level k with level k); widths and bins may differ.
Per tap, the cosine similarities between the batch items (tap flattened per item) are mapped
to [0, 1] by (c + 1)/2 and normalised over each row; the loss per level is
mean over the B×B entries of P_t·(log(P_t + eps) − log(P_s + eps)) as in the authors' code,
summed over levels. (I²S-TFCKD's second stream applies the same recipe per frame.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..base import DistillMethod, paired_levels
from ..registry import register
from ..similarity import cosine_distribution


@dataclass
class PKTOptions:
    eps: float = 1e-6  # in the norms and inside the logs


def batch_distribution(x: torch.Tensor, eps: float) -> torch.Tensor:
    """``[B, C, T, D]`` -> ``[B, B]``, rows sum to one."""
    v = x.flatten(1)                  # (B, C·T·D)
    n = v.norm(dim=1) + eps           # (B,)
    return cosine_distribution(v @ v.T, n[:, None] * n[None, :])


@register
class PKT(DistillMethod):
    description = "probabilistic knowledge transfer: KL between (cos+1)/2 batch distributions"
    Options = PKTOptions

    def compute(self, student_taps, teacher_taps):
        eps, terms = self.options.eps, {}
        for s_name, t_name in paired_levels(self.student_info, self.teacher_info):
            q = batch_distribution(student_taps[s_name], eps)
            p = batch_distribution(teacher_taps[t_name], eps)
            terms[s_name] = (p * ((p + eps).log() - (q + eps).log())).mean()
        return sum(terms.values()), terms
