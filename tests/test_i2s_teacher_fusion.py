"""I²S-TFCKD's teacher-side fusion options and the released-model fidelity settings (issue 11)."""

from __future__ import annotations

import torch
from torch import nn

from sekd.distill import TapInfo, build_method
from sekd.models import build_enhancer

BATCH, SAMPLES = 2, 2048


def build(student, teacher, **options):
    return build_method("i2s_tfckd", TapInfo.from_enhancer(student, SAMPLES, BATCH),
                        TapInfo.from_enhancer(teacher, SAMPLES, BATCH), {"fusion_channels": 8, **options})


def pair():
    torch.manual_seed(0)
    student, teacher = build_enhancer("tiny"), build_enhancer("tiny", channels=16).eval()
    noisy = torch.randn(BATCH, SAMPLES)
    with torch.no_grad():
        _, teacher_taps = teacher(noisy, return_taps=True)
    return student, teacher, noisy, teacher_taps


def train_steps(method, student, noisy, teacher_taps, steps):
    optimiser = torch.optim.Adam([*student.parameters(), *method.parameters()], lr=0.05)
    for _ in range(steps):
        loss, _ = method(student(noisy, return_taps=True)[1], teacher_taps)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


def test_learned_teacher_fusion_drifts_and_the_drift_is_logged():
    student, teacher, noisy, teacher_taps = pair()
    method = build(student, teacher, drift_every=1)
    method.train()
    method(student(noisy, return_taps=True)[1], teacher_taps)
    first = method.diagnostics
    assert set(first) == {"drift/target", "drift/feature"}
    assert first["drift/target"].item() < 1e-9 and first["drift/feature"].item() < 1e-6  # nothing trained yet
    train_steps(method, student, noisy, teacher_taps, 5)
    assert method.diagnostics["drift/feature"].item() > 1e-3  # the keys' gradient moved the teacher units
    # The frozen copy is a measuring stick only: not a parameter, not in the state dict.
    assert not any("init" in name for name, _ in method.named_parameters())
    assert not any("init" in key for key in method.state_dict())


def test_frozen_teacher_fusion_keeps_its_initial_weights_and_skips_the_drift():
    student, teacher, noisy, teacher_taps = pair()
    method = build(student, teacher, teacher_fusion="frozen", drift_every=1)
    before = {k: v.clone() for k, v in method.fusion["t"].state_dict().items()}
    method.train()
    train_steps(method, student, noisy, teacher_taps, 3)
    assert all(torch.equal(before[k], v) for k, v in method.fusion["t"].state_dict().items())
    assert all(not p.requires_grad for p in method.fusion["t"].parameters())
    assert method.diagnostics == {}
    learned = build(student, teacher)
    teacher_units = sum(p.numel() for p in learned.fusion["t"].parameters())
    assert learned.extra_parameters() - method.extra_parameters() == teacher_units


def test_fusion_units_use_one_prelu_slope_as_released_or_one_per_channel():
    student, teacher, _, _ = pair()
    slopes = {m.num_parameters for m in build(student, teacher).modules() if isinstance(m, nn.PReLU)}
    assert slopes == {1}
    slopes = {m.num_parameters for m in build(student, teacher, fusion_prelu="channel").modules()
              if isinstance(m, nn.PReLU)}
    assert slopes == {8, 16}  # m = 8 (and the student's output width), the teacher's output width 16


def test_dual_path_group_norms_use_the_released_eps():
    for causal in (False, True):
        model = build_enhancer("tiny", causal=causal)
        eps = {m.eps for name, m in model.named_modules()
               if "dual_path" in name and type(m).__name__ in ("GroupNorm", "FrameNorm")}
        assert eps == {1e-8}, (causal, eps)
