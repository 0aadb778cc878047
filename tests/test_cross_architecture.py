"""Every distillation method from a DPDCRN teacher into students of other architectures: the example user
network (examples/my_net.py, taps by hooks) and GTCRN (other widths, bins and depths of every set)."""

import copy
import math
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from sekd.checkpoint import load_enhancer, save_enhancer
from sekd.cli import main
from sekd.config import load_config
from sekd.distill.base import paired_levels
from sekd.engine.module import build_model
from sekd.models import build_enhancer

from test_distill_methods import NAMES, data, info, one_thread, teacher  # noqa: F401  (fixtures)
from test_distill_methods import build

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "my_net.yaml"


@pytest.fixture(autouse=True)
def examples_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))


def student_of(kind: str):
    """The student and its first layer's weight (where the gradient must arrive)."""
    torch.manual_seed(0)
    if kind == "my_net":
        model = build_model(load_config(EXAMPLE, ["model.args.channels=8", "model.args.hidden=16"]))
        return model, model.network.module.down1[0].weight
    model = build_enhancer("gtcrn", channels=8, layers=1)
    return model, model.network.enc1[0].weight


def test_students_differ_from_the_teacher_in_every_set(teacher):
    t = info(teacher)
    for kind in ("my_net", "gtcrn"):
        s = info(student_of(kind)[0])
        assert s.frames == t.frames
        for set_name in ("encoder", "decoder"):
            assert len(s.sets[set_name]) != len(t.sets[set_name])
        assert {s.shapes[n] for n in s.feature_taps}.isdisjoint({t.shapes[n] for n in t.feature_taps})
    gtcrn = info(student_of("gtcrn")[0])
    assert [p[1] for p in paired_levels(gtcrn, t)] == ["enc1", "enc1", "enc2", "enc3", "enc3", "mid2",
                                                       "dec1", "dec1", "dec2", "dec2"]


@pytest.mark.parametrize("kind", ["my_net", "gtcrn"])
@pytest.mark.parametrize("name", NAMES)
def test_every_method_distils_another_architecture(name, kind, data, teacher):
    noisy, clean = data
    student, first_layer = student_of(kind)
    live_teacher = copy.deepcopy(teacher).requires_grad_(True)  # autograd on: the method must detach
    before = copy.deepcopy(live_teacher.state_dict())
    method = build(name, student, live_teacher)
    optimiser = torch.optim.Adam([*student.parameters(), *method.parameters()], lr=3e-3)
    losses = []
    for step in range(3):
        _, teacher_taps = live_teacher(noisy, return_taps=True)
        enhanced, student_taps = student(noisy, return_taps=True)
        kd, terms = method(student_taps, teacher_taps)
        assert torch.isfinite(kd)
        if name == "none":
            assert kd.item() == 0
        else:
            assert kd.item() > 0 and torch.allclose(sum(terms.values()), kd)
        optimiser.zero_grad()
        if step == 0 and name != "none":
            kd.backward(retain_graph=True)
            assert first_layer.grad.abs().sum() > 0  # the KD loss alone reaches the student's first layer
            for param_name, param in method.named_parameters():
                assert param.grad is not None and torch.isfinite(param.grad).all(), param_name
            optimiser.zero_grad()
        loss = F.mse_loss(enhanced, clean) + 0.01 * kd
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert all(map(math.isfinite, losses))
    assert all(p.grad is None for p in live_teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in live_teacher.state_dict().items())


SMOKE = ["data.batch_size=4", "data.crop_seconds=1.0", "data.valid_files=2", "train.max_steps=2",
         "train.val_every=2", "train.warmup_steps=1", "train.log_every=1"]


@pytest.mark.parametrize("student", [["model.args.channels=8", "model.args.hidden=16"],
                                     ["model.class=null", "model.args=null", "model.taps=null", "model.preset=gtcrn",
                                      "model.channels=8"]], ids=["my_net", "gtcrn"])
def test_sekd_distill_trains_another_architecture(student, small_corpus, tmp_path):
    """The README's one command on the small corpus: the example config, a DPDCRN teacher checkpoint."""
    torch.manual_seed(0)
    teacher_ckpt = tmp_path / "teacher.ckpt"
    save_enhancer(build_enhancer("tiny", channels=16), teacher_ckpt)
    run = tmp_path / "run"
    assert main(["distill", str(EXAMPLE), f"data.train={small_corpus}", f"train.out_dir={run}",
                 f"distill.teacher={teacher_ckpt}", "distill.options={fusion_channels: 8, checkpoint: false}",
                 *student, *SMOKE]) == 0
    model = load_enhancer(run / "checkpoints" / "last.ckpt")
    assert type(model.network).__name__ == ("HookedNetwork" if "model.preset=gtcrn" not in student else "GTCRN")
    assert model(torch.randn(1, 4000)).shape == (1, 4000)
