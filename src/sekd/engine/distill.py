"""``sekd distill``: a student trained on L_SE + λ·L_KD from a frozen teacher (method.md §3.6).

The step reads top to bottom: teacher forward with taps under ``no_grad`` (put on the
student's STFT grid by :class:`sekd.distill.bridge.STFTBridge` when the teacher's n_fft, hop
or window differ), student forward with taps, SE loss, method loss, total. The teacher is
frozen structurally: its parameters never require gradients, it stays in eval mode whatever
Lightning asks of the module, its weights are left out of the checkpoints (it is reloaded
from its own checkpoint), and a fingerprint taken at start-up is compared when training
ends. The saved checkpoint loads with :func:`sekd.checkpoint.load_enhancer` exactly like one
from ``sekd train``; the method's modules are not needed at inference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..audio import SAMPLE_RATE
from ..checkpoint import load_enhancer
from ..config import Config, build_section
from ..distill import TapInfo, build_method
from ..distill.bridge import STFTBridge, same_grid
from ..errors import SekdError
from .module import EnhancementModule
from .train import run_training


@dataclass
class DistillConfig:
    teacher: str = ""               # the teacher's checkpoint (from sekd train)
    method: str = "i2s_tfckd"       # a name from `sekd methods`
    weight: float = 1.0             # λ in L_SE + λ·L_KD
    options: dict = field(default_factory=dict)  # the method's own options (see its docstring)
    trust_classes: list = field(default_factory=list)  # classes outside sekd the teacher checkpoint may name


def distill_config(cfg: Config) -> DistillConfig:
    dcfg = build_section("distill", DistillConfig, cfg.extra.get("distill"), "config")
    if not dcfg.teacher:
        raise SekdError("config: distill.teacher must name the teacher's checkpoint")
    return dcfg


def fingerprint(module: torch.nn.Module) -> float:
    """A cheap checksum of all weights, to prove they did not change."""
    with torch.no_grad():
        return float(sum(p.double().abs().sum() + p.double().sum() for p in module.parameters()))


class DistillationModule(EnhancementModule):
    def __init__(self, config: dict):
        super().__init__(config)
        self.dcfg = distill_config(self.cfg)
        self.teacher = load_enhancer(self.dcfg.teacher)
        self.teacher.requires_grad_(False)
        if self.teacher.in_channels != self.model.in_channels:
            raise SekdError(f"{self.dcfg.teacher}: the teacher takes {self.teacher.in_channels} input channel(s), "
                            f"the student {self.model.in_channels}")
        # A teacher with another STFT (e.g. 512/256 for a 256/128 student) has its taps put on the student's grid.
        self.bridge = None if same_grid(self.teacher.signal, self.model.signal) else \
            STFTBridge(self.teacher.signal, self.model.signal)
        samples, batch = int(self.cfg.data.crop_seconds * SAMPLE_RATE), self.cfg.data.batch_size
        student_info = TapInfo.from_enhancer(self.model, samples, batch)
        teacher_info = TapInfo.from_enhancer(self.teacher, samples, batch)
        if self.bridge is not None:
            teacher_info = self.bridge.tap_info(teacher_info, student_info)
        self.method = build_method(self.dcfg.method, student_info, teacher_info, self.dcfg.options)
        self.teacher_fingerprint = fingerprint(self.teacher)

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # always: Lightning switches the whole module to train mode
        return self

    def teacher_taps(self, noisy: torch.Tensor) -> dict[str, torch.Tensor]:
        """The frozen teacher's taps for ``noisy``, on the student's STFT grid; no gradients."""
        with torch.no_grad():
            wave, taps = self.teacher(noisy, return_taps=True)
            return taps if self.bridge is None else self.bridge(taps, wave)

    def training_loss(self, noisy: torch.Tensor, clean: torch.Tensor) -> tuple[torch.Tensor, dict]:
        teacher_taps = self.teacher_taps(noisy)
        estimate, student_taps = self.model(noisy, return_taps=True)
        se, se_terms = self.se_loss(estimate, clean)
        kd, kd_terms = self.method(student_taps, teacher_taps)
        terms = {**{f"se/{k}": v for k, v in se_terms.items()}, **{f"kd/{k}": v for k, v in kd_terms.items()},
                 **{f"diag/{k}": v for k, v in self.method.diagnostics.items()}, "se": se, "kd": kd}
        return se + self.dcfg.weight * kd, terms

    def on_train_end(self) -> None:
        if fingerprint(self.teacher) != self.teacher_fingerprint:
            raise RuntimeError("the teacher's weights changed during distillation")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("teacher.")}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # The teacher is not in our checkpoints; keep strict loading by supplying its weights.
        checkpoint["state_dict"].update({f"teacher.{k}": v for k, v in self.teacher.state_dict().items()})


def distill(config: Config) -> Path:
    """Distil a student from ``config.distill.teacher``; returns the best checkpoint's path."""
    return run_training(DistillationModule, config)
