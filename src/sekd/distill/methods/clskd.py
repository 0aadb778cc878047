"""Cross-layer frame-similarity KD for SE (CLSKD; Cheng et al., Interspeech 2022; method.md §4.7).

Taps: the levels of :attr:`TapInfo.levels` (DPDCRN: enc1, enc2, enc3, last mid, dec1, dec2),
paired across the models by :func:`sekd.distill.base.paired_levels`.
Per tap and item, the frame-level similarity S = V Vᵀ (``[B, T, T]``, V the frames with
channels and bins flattened, so widths may differ) with every row L2-normalised. A pair
(student level i, teacher level j) costs the mean squared difference of the two matrices.

The recovered text names only "cross-layer connection paths that fuse multi-level teacher
information"; this reading follows the review direction of ReviewKD from the same years:
``paths: review`` (default) connects student level i to the teacher levels paired with
student levels 0..i (its own and every shallower level), averaged per student level;
``paths: one-to-one`` keeps each student level with its paired teacher level. Loss: sum
over student levels.

``last_pair_losses["levels"]`` holds the pair costs of the last call, ``[L, L]`` (student
level × the teacher level paired with student level j; 6 × 6 for DPDCRN), NaN where no
path connects them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch.nn import functional as F

from ..base import DistillMethod, paired_levels
from ..registry import register
from ..similarity import frame_vectors


@dataclass
class CLSKDOptions:
    paths: Literal["review", "one-to-one"] = "review"  # which teacher levels each student level learns from


def frame_similarity(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, T, D]`` -> ``[B, T, T]`` Gram matrix over frames, rows L2-normalised."""
    v = frame_vectors(x)              # (B, T, C·D)
    return F.normalize(v @ v.transpose(1, 2), dim=-1)


@register
class CLSKD(DistillMethod):
    description = "CLSKD: cross-layer frame-level TxT similarity matching"
    Options = CLSKDOptions

    def __init__(self, student, teacher, **options):
        super().__init__(student, teacher, **options)
        self.last_pair_losses: dict[str, torch.Tensor] = {}

    def compute(self, student_taps, teacher_taps):
        s_levels, t_levels = zip(*paired_levels(self.student_info, self.teacher_info))
        s_sim = [frame_similarity(student_taps[n]) for n in s_levels]  # L × (B, T, T)
        t_by_name = {n: frame_similarity(teacher_taps[n]) for n in dict.fromkeys(t_levels)}
        t_sim = [t_by_name[n] for n in t_levels]
        pairs = torch.full((len(s_levels), len(t_levels)), float("nan"), device=s_sim[0].device)
        terms = {}
        for i, name in enumerate(s_levels):
            sources = range(i + 1) if self.options.paths == "review" else [i]
            costs = [(s_sim[i] - t_sim[j]).pow(2).mean() for j in sources]
            for j, cost in zip(sources, costs):
                pairs[i, j] = cost.detach()
            terms[name] = sum(costs) / len(costs)
        self.last_pair_losses = {"levels": pairs}
        return sum(terms.values()), terms
