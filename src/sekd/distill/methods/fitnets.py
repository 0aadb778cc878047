"""FitNets (Romero et al., ICLR 2015; method.md §4.3): hints through learned 1×1 regressors.

Taps: the six levels of :attr:`TapInfo.levels` (enc1, enc2, enc3, last mid, dec1, dec2),
student level k against teacher level k (same T and D, channels C_s vs C_t). Each level has
a 1×1 convolution C_s → C_t applied to the student tap; the loss is the sum over levels of
the mean squared error to the teacher tap.

Paper vs here: the paper trains the regressor in a separate first stage; here it trains
jointly with the student, as SE distillation usually does. When C_s = C_t the regressor
starts as the identity (``identity_init``), so identical taps give zero loss at the start.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..base import DistillMethod
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
        self.regressors = nn.ModuleDict()
        for s_name, t_name in zip(student.levels, teacher.levels):
            conv = nn.Conv2d(student.channels(s_name), teacher.channels(t_name), 1, bias=False)
            if self.options.identity_init and conv.in_channels == conv.out_channels:
                with torch.no_grad():
                    conv.weight.copy_(torch.eye(conv.in_channels)[:, :, None, None])
            self.regressors[s_name] = conv

    def compute(self, student_taps, teacher_taps):
        terms = {}
        for s_name, t_name in zip(self.student_info.levels, self.teacher_info.levels):
            hint = self.regressors[s_name](student_taps[s_name])  # (B, C_t, T, D)
            terms[s_name] = F.mse_loss(hint, teacher_taps[t_name])
        return sum(terms.values()), terms
