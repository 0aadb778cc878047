"""The one interface every distillation method implements (method.md §3–4, style.md §2–4).

A method is built from the shapes of both models' taps and compares the taps; it never
runs the networks::

    student_info = TapInfo.from_enhancer(student, samples=64000, batch=8)
    teacher_info = TapInfo.from_enhancer(teacher, samples=64000, batch=8)
    method = build_method("i2s_tfckd", student_info, teacher_info, {"fusion_channels": 64})
    optimiser = torch.optim.Adam([*student.parameters(), *method.parameters()])
    with torch.no_grad():
        _, teacher_taps = teacher(noisy, return_taps=True)
    enhanced, student_taps = student(noisy, return_taps=True)
    kd, terms = method(student_taps, teacher_taps)   # scalar, {name: scalar} for logging

The method owns its trainable modules (projections, embeddings, fusion units), so
``method.parameters()`` joins the student's in the optimiser. Teacher taps are detached on
entry, so no gradient can reach the teacher even if it ran with autograd on.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, fields
from typing import ClassVar, Literal

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import SekdError

Taps = typing.Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class TapInfo:
    """Shapes of one model's taps for a fixed training crop (what a method is built from)."""

    sets: dict[str, list[str]]          # correlated sets of method.md §3.1: encoder, middle, decoder
    shapes: dict[str, tuple[int, int]]  # (C, D) of every tap of the sets, plus ``out`` (2, F)
    frames: int                         # T of the fixed training crop
    batch: int                          # fixed training batch size B
    mask_tap: str | None = None         # the tap that is the network's mask itself (DPDCRN's dec3), if any

    @classmethod
    def from_network(cls, network, bins: int, frames: int, batch: int) -> "TapInfo":
        """From any :class:`sekd.models.EnhancementNetwork` fed ``bins`` frequency bins."""
        shapes, mask_tap = network.tap_layout(bins)
        shapes = dict(shapes)
        shapes["out"] = (2, bins)
        return cls(sets=network.tap_sets, shapes=shapes, frames=frames, batch=batch, mask_tap=mask_tap)

    @classmethod
    def from_enhancer(cls, enhancer, samples: int, batch: int) -> "TapInfo":
        """From a :class:`sekd.models.SpeechEnhancer` trained on crops of ``samples`` samples."""
        cfg = enhancer.signal
        return cls.from_network(enhancer.network, cfg.bins, 1 + samples // cfg.hop, batch)

    @property
    def levels(self) -> list[str]:
        """The feature taps the layer-wise baselines match, shallow to deep.

        Every encoder tap, the last middle tap (the one that feeds the decoder), every
        decoder tap except the mask (output KD covers it). DPDCRN: enc1, enc2, enc3, midL,
        dec1, dec2. :func:`paired_levels` pairs them across two models.
        """
        decoder = [n for n in self.sets["decoder"] if n != self.mask_tap]
        return [*self.sets["encoder"], self.sets["middle"][-1], *decoder]

    @property
    def feature_taps(self) -> list[str]:
        """Every tap of the three sets except the mask."""
        return [n for s in ("encoder", "middle", "decoder") for n in self.sets[s] if n != self.mask_tap]

    @property
    def width(self) -> int:
        """The model's width for the fusion units' outputs: the channels of its first encoder tap."""
        return self.channels(self.sets["encoder"][0])

    def channels(self, tap: str) -> int:
        return self.shapes[tap][0]

    def bins(self, tap: str) -> int:
        return self.shapes[tap][1]


def _level_groups(info: TapInfo) -> list[list[str]]:
    """:attr:`TapInfo.levels` split by set: encoder taps, the last middle tap, decoder feature taps."""
    levels = info.levels
    n_enc = len(info.sets["encoder"])
    return [levels[:n_enc], levels[n_enc:n_enc + 1], levels[n_enc + 1:]]


def paired_levels(student: TapInfo, teacher: TapInfo) -> list[tuple[str, str]]:
    """(student level, teacher level) pairs for the layer-wise baselines, shallow to deep.

    Within each set (encoder, middle, decoder) every student level gets the teacher level
    at the same relative depth, both ends aligned: with equal counts (DPDCRN to DPDCRN) level
    k pairs with level k; a set with fewer teacher taps reuses some, one with more skips
    some. A student set with a single level pairs with the teacher set's last level (the
    middle set's bottleneck output; the decoder's level nearest the mask).
    """
    pairs = []
    for s_group, t_group in zip(_level_groups(student), _level_groups(teacher)):
        if not s_group or not t_group:
            continue
        last_s, last_t = len(s_group) - 1, len(t_group) - 1
        for i, name in enumerate(s_group):
            j = last_t if last_s == 0 else round(i * last_t / last_s)
            pairs.append((name, t_group[j]))
    return pairs


def resize_bins(x: torch.Tensor, bins: int) -> torch.Tensor:
    """``[B, C, T, D]`` -> ``[B, C, T, bins]``: average-pooled when coarser, linearly interpolated when finer.

    How the layer-wise methods compare taps of different frequency resolutions.
    """
    if x.shape[-1] == bins:
        return x
    if x.shape[-1] > bins:
        return F.adaptive_avg_pool2d(x, (x.shape[2], bins))
    return F.interpolate(x, size=(x.shape[2], bins), mode="bilinear", align_corners=False)


@dataclass
class NoOptions:
    """A method without options."""


def parse_options(cls: type, given: typing.Mapping[str, object], method: str):
    """``cls(**given)`` after checking every key and simple type; errors list the valid keys."""
    valid = [f.name for f in fields(cls)]
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise SekdError(f"unknown option(s) {', '.join(map(repr, unknown))} for distillation method {method!r}; "
                        f"valid options: {', '.join(valid) or '(none)'}")
    hints = typing.get_type_hints(cls)
    for key, value in given.items():
        _check_type(method, key, value, hints[key])
    return cls(**given)


def _check_type(method: str, key: str, value: object, hint) -> None:
    where = f"option {key!r} of distillation method {method!r}"
    if typing.get_origin(hint) is Literal:
        if value not in typing.get_args(hint):
            raise SekdError(f"{where} must be one of {', '.join(map(repr, typing.get_args(hint)))}; got {value!r}")
        return
    ok = {bool: lambda v: isinstance(v, bool),
          int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          str: lambda v: isinstance(v, str)}[hint]
    if not ok(value):
        raise SekdError(f"{where} must be {hint.__name__}; got {value!r}")


class DistillMethod(nn.Module):
    """Base of all distillation methods: ``Method(student: TapInfo, teacher: TapInfo, **options)``.

    Subclasses set ``description`` (one line, what ``sekd methods`` prints) and ``Options``
    (a dataclass in the method's own file), are decorated with
    :func:`sekd.distill.registry.register` (file name = registry key), and implement
    :meth:`compute`. Methods that depend on the fixed crop length or batch size list them in
    ``self.fixed_sizes`` (``"frames"``, ``"batch"``); :meth:`forward` then rejects other sizes
    with an error naming expected and actual sizes.
    """

    name: ClassVar[str] = ""          # registry key, set by @register
    description: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions

    def __init__(self, student: TapInfo, teacher: TapInfo, **options):
        super().__init__()
        if (student.frames, student.batch) != (teacher.frames, teacher.batch):
            raise SekdError(f"student and teacher TapInfo disagree on the training crop: batch×frames "
                            f"{student.batch}×{student.frames} vs {teacher.batch}×{teacher.frames}")
        self.student_info, self.teacher_info = student, teacher
        self.options = parse_options(self.Options, options, self.name)
        self.fixed_sizes: set[str] = set()
        # Measurements of the last call that are not part of the loss (logged as train/diag/<name>).
        self.diagnostics: dict[str, torch.Tensor] = {}

    def forward(self, student_taps: Taps, teacher_taps: Taps) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(loss, terms)``: the scalar KD loss and its named parts for logging."""
        size = self._check(student_taps, self.student_info, "student")
        teacher_size = self._check(teacher_taps, self.teacher_info, "teacher")
        if teacher_size != size:
            raise SekdError(f"student and teacher taps differ in batch×frames: "
                            f"{size[0]}×{size[1]} vs {teacher_size[0]}×{teacher_size[1]}")
        expected = {"batch": self.student_info.batch, "frames": self.student_info.frames}
        actual = {"batch": size[0], "frames": size[1]}
        if any(expected[k] != actual[k] for k in self.fixed_sizes):
            fixed = " and ".join(sorted(self.fixed_sizes))
            raise SekdError(f"distillation method {self.name!r} was built for a fixed {fixed} "
                            f"(batch {expected['batch']}, {expected['frames']} frames) but got batch "
                            f"{actual['batch']}, {actual['frames']} frames; keep the training crop length and "
                            f"batch size fixed (drop the last incomplete batch)")
        return self.compute(student_taps, {k: v.detach() for k, v in teacher_taps.items()})

    def compute(self, student_taps: Taps, teacher_taps: Taps) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def extra_parameters(self) -> int:
        """Number of trainable parameters the method adds to the student's."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    @staticmethod
    def _check(taps: Taps, info: TapInfo, side: str) -> tuple[int, int]:
        """Every tap of ``info`` present with shape ``[B, C, T, D]`` and one common (B, T)."""
        missing = [name for name in info.shapes if name not in taps]
        if missing:
            raise SekdError(f"{side} taps lack {', '.join(missing)}; run the model with return_taps=True")
        size = None
        for name, (c, d) in info.shapes.items():
            shape = tuple(taps[name].shape)
            if len(shape) != 4 or shape[1] != c or shape[3] != d or (size and shape[::2] != size):
                want = f"[{size[0]}, {c}, {size[1]}, {d}]" if size else f"[B, {c}, T, {d}]"
                raise SekdError(f"{side} tap {name!r}: expected shape {want}, got {list(shape)}")
            size = shape[::2]
        return size
