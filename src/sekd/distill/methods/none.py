"""No distillation (method.md §4.1): the student trains on the SE loss alone, through the same path."""

from __future__ import annotations

from ..base import DistillMethod
from ..registry import register


@register
class NoKD(DistillMethod):
    """Loss 0 and no terms; no trainable modules. Lets the no-KD baseline run the KD training path."""

    description = "no distillation: the student trains on the SE loss alone"

    def compute(self, student_taps, teacher_taps):
        return student_taps["out"].new_zeros(()), {}
