"""ReviewKD (Chen et al., CVPR 2021, "Distilling knowledge via knowledge review"; method.md §4.9).

Taps: the levels of :attr:`TapInfo.levels` (DPDCRN: enc1, enc2, enc3, last mid, dec1,
dec2), paired across the models by :func:`sekd.distill.base.paired_levels`. The student's
levels pass through a chain of attention-based fusion units (ABF,
:class:`sekd.distill.fusion.FusionUnit` with BatchNorm as in the released code) from the
deepest level (dec2) to the shallowest (enc1): each unit maps its student tap C_s → m and
fuses it with the residual of the deeper unit, then maps m → C_t of its paired teacher
level, so the output at level k reviews student levels k..L and is matched to its teacher
level by the hierarchical context loss (HCL): MSE at full resolution plus MSE after
adaptive average pooling of (T, D) to 4×4, 2×2 and 1×1, weighted 1, 1/2, 1/4, 1/8 and
normalised by their sum. An output with another D than its teacher level is first
resampled over bins (:func:`sekd.distill.base.resize_bins`; ReviewKD resizes its fused
maps to the teacher's). Loss: sum over levels.

Identical student and teacher taps do not give zero loss: every output is a learned fusion
of several levels, with no identity setting. The test checks instead that training the
fusion units alone drives the loss towards zero against an identical teacher.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from ...errors import SekdError
from ..base import DistillMethod, paired_levels, resize_bins
from ..fusion import FusionChain
from ..registry import register


@dataclass
class ReviewKDOptions:
    mid_channels: int = 64  # m of the fusion units (256 in the released ResNet setting)

    def __post_init__(self):
        if self.mid_channels < 1:
            raise SekdError(f"option 'mid_channels' of distillation method 'reviewkd' must be ≥ 1; "
                            f"got {self.mid_channels}")


def hcl(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Hierarchical context loss of two ``[B, C, T, D]`` maps."""
    loss, weight, total = F.mse_loss(student, teacher), 1.0, 1.0
    for size in (4, 2, 1):
        weight /= 2
        loss = loss + weight * F.mse_loss(F.adaptive_avg_pool2d(student, size), F.adaptive_avg_pool2d(teacher, size))
        total += weight
    return loss / total


@register
class ReviewKD(DistillMethod):
    description = "ReviewKD: residual fusion of student taps, matched level by level with HCL"
    Options = ReviewKDOptions

    def __init__(self, student, teacher, **options):
        super().__init__(student, teacher, **options)
        self.deep_first = paired_levels(student, teacher)[::-1]
        self.fusion = FusionChain([student.channels(s) for s, _ in self.deep_first], self.options.mid_channels,
                                  [teacher.channels(t) for _, t in self.deep_first], norm="batch", every_output=True)

    def compute(self, student_taps, teacher_taps):
        fused = self.fusion([student_taps[s] for s, _ in self.deep_first])  # L × (B, C_t, T, D_s)
        terms = {s: hcl(resize_bins(y, teacher_taps[t].shape[-1]), teacher_taps[t])
                 for (s, t), y in reversed(list(zip(self.deep_first, fused)))}
        return sum(terms.values()), terms
