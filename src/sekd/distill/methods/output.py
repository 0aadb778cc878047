"""Output KD (method.md §4.2): distance between the student's and the teacher's enhanced spectra.

Tap: ``out``, the enhanced spectrum ``[B, 2, T, F]`` (real, imaginary) that
:class:`sekd.models.SpeechEnhancer` adds to the taps. The waveform distance the section also
allows is not offered: the waveform is an iSTFT of this spectrum, and the trainer already
holds both waveforms if it wants it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch.nn import functional as F

from ..base import DistillMethod
from ..registry import register


@dataclass
class OutputOptions:
    distance: Literal["mse", "l1"] = "mse"  # elementwise distance between the two spectra


@register
class OutputKD(DistillMethod):
    """Mean squared (or absolute) difference of the enhanced spectra; no trainable modules."""

    description = "output KD: distance between student and teacher enhanced spectra"
    Options = OutputOptions

    def compute(self, student_taps, teacher_taps):
        distance = F.mse_loss if self.options.distance == "mse" else F.l1_loss
        loss = distance(student_taps["out"], teacher_taps["out"])  # (B, 2, T, F) vs (B, 2, T, F)
        return loss, {"out": loss}
