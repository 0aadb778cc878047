"""ReviewKD (Chen et al., CVPR 2021, "Distilling knowledge via knowledge review"; method.md §4.9).

Taps: the six levels of :attr:`TapInfo.levels` (enc1, enc2, enc3, last mid, dec1, dec2).
The student's levels pass through a chain of attention-based fusion units (ABF,
:class:`sekd.distill.fusion.FusionUnit` with BatchNorm as in the released code) from the
deepest level (dec2) to the shallowest (enc1): each unit maps its student tap C_s → m and
fuses it with the residual of the deeper unit, then maps m → C_t, so the output at level k
reviews student levels k..5 and is matched to teacher level k by the hierarchical context
loss (HCL): MSE at full resolution plus MSE after adaptive average pooling of (T, D) to
4×4, 2×2 and 1×1, weighted 1, 1/2, 1/4, 1/8 and normalised by their sum. Loss: sum over
levels.

Identical student and teacher taps do not give zero loss: every output is a learned fusion
of several levels, with no identity setting. The test checks instead that training the
fusion units alone drives the loss towards zero against an identical teacher.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from ...errors import SekdError
from ..base import DistillMethod
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
        deep_first = student.levels[::-1]
        self.fusion = FusionChain([student.channels(n) for n in deep_first], self.options.mid_channels,
                                  teacher.channels("enc1"), norm="batch", every_output=True)

    def compute(self, student_taps, teacher_taps):
        s_levels, t_levels = self.student_info.levels[::-1], self.teacher_info.levels[::-1]  # deepest first
        fused = self.fusion([student_taps[n] for n in s_levels])  # 6 × (B, C_t, T, D_k)
        terms = {s: hcl(y, teacher_taps[t]) for s, t, y in reversed(list(zip(s_levels, t_levels, fused)))}
        return sum(terms.values()), terms
