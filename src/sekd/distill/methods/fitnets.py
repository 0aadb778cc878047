"""FitNets (Romero et al., ICLR 2015; method.md §4.3): hints through learned 1×1 regressors.

Taps: the levels of :attr:`TapInfo.levels` (DPDCRN: enc1, enc2, enc3, last mid, dec1,
dec2), paired across the two models by :func:`sekd.distill.base.paired_levels` (DPDCRN to
DPDCRN: level k with level k). Each student level has a 1×1 convolution C_s → C_t; its
output is resampled over bins to the teacher tap's D when they differ (the paper's
regressor maps the student's map to the teacher's size; here pooling or linear
interpolation along frequency, :func:`sekd.distill.base.resize_bins`). The loss is the sum
over levels of the mean squared error to the teacher tap.

Paper vs here: the paper trains the regressor in a separate first stage; here it trains
jointly with the student, as SE distillation usually does. When C_s = C_t the regressor
starts as the identity (``identity_init``), so identical taps give zero loss at the start.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..base import DistillMethod, paired_levels, resize_bins
from ..registry import register


@dataclass
class FitNetsOptions:
    identity_init: bool = True  # start each regressor as the identity when C_s == C_t


@register
class FitNets(DistillMethod):
    description = "FitNets: MSE between 1x1-projected student taps and teacher taps"
    Options = FitNetsOptions

    def __init__(self, student, teacher, **options):
        super().__init__(student, teacher, **options)
        self.pairs = paired_levels(student, teacher)
        self.regressors = nn.ModuleDict()
        for s_name, t_name in self.pairs:
            conv = nn.Conv2d(student.channels(s_name), teacher.channels(t_name), 1, bias=False)
            if self.options.identity_init and conv.in_channels == conv.out_channels:
                with torch.no_grad():
                    conv.weight.copy_(torch.eye(conv.in_channels)[:, :, None, None])
            self.regressors[s_name] = conv

    def compute(self, student_taps, teacher_taps):
        terms = {}
        for s_name, t_name in self.pairs:
            target = teacher_taps[t_name]                                                    # (B, C_t, T, D_t)
            hint = resize_bins(self.regressors[s_name](student_taps[s_name]), target.shape[-1])  # (B, C_t, T, D_t)
            terms[s_name] = F.mse_loss(hint, target)
        return sum(terms.values()), terms
