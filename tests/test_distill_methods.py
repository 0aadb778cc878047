"""Property tests of every registered distillation method (sekd.distill), at tiny sizes."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch.nn import functional as F

from sekd.distill import TapInfo, build_method, get_method, list_methods
from sekd.distill.methods.i2s_tfckd import I2STFCKD
from sekd.errors import SekdError
from sekd.models import build_enhancer

BATCH, SAMPLES = 3, 2048  # 9 frames at hop 256
NAMES = [name for name, _ in list_methods()]
SMALL = {"i2s_tfckd": {"fusion_channels": 16}, "reviewkd": {"mid_channels": 16}}  # keeps the fusion units tiny


def diagonal(*sets):
    """Sum of the same-named pairs' losses: zero for identical taps whatever the other pairs do."""
    return lambda method, loss: sum(method.last_pair_losses[s].diagonal().sum() for s in sets)


def total(method, loss):
    return loss


# What "zero for identical taps" means per method. Methods that pair every student tap with
# every teacher tap (CLSKD's review paths, SemCKD, I²S-TFCKD) compare enc1 with enc2 too, so
# only their same-named pairs vanish; FitNets and SemCKD start their projections as identity
# when the widths match. ReviewKD has no identity setting (see test_reviewkd_learns_identical_teacher).
ZERO = {"none": total, "output": total, "fitnets": total, "at": total, "sp": total, "pkt": total,
        "clskd": diagonal("levels"), "semckd": diagonal("layers"),
        "i2s_tfckd": diagonal("encoder", "middle", "decoder"), "reviewkd": None}
FIXED = {"semckd": {"batch"}, "i2s_tfckd": {"frames", "batch"}}


def seeded(seed, **overrides):
    torch.manual_seed(seed)
    return build_enhancer("tiny", **overrides)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors run several times faster on one thread, above all on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    torch.manual_seed(123)
    clean = torch.sin(torch.linspace(0, 300, SAMPLES)).expand(BATCH, SAMPLES) * torch.rand(BATCH, 1)
    return clean + 0.3 * torch.randn(BATCH, SAMPLES), clean


@pytest.fixture(scope="module")
def teacher():
    """Wider and deeper than the student: channels 16, 2 middle layers."""
    return seeded(2, channels=16, layers=2).eval().requires_grad_(False)


def info(model):
    return TapInfo.from_enhancer(model, SAMPLES, BATCH)


def build(name, student, teacher, **options):
    return build_method(name, info(student), info(teacher), {**SMALL.get(name, {}), **options})


def test_registry_lists_every_method_once_with_a_description():
    assert set(NAMES) == set(ZERO)
    for name, description in list_methods():
        assert get_method(name).__module__.rsplit(".", 1)[-1] == name  # file name = registry key
        assert description and "\n" not in description


def test_unknown_names_and_bad_options_are_user_errors(teacher):
    student = seeded(0)
    with pytest.raises(SekdError, match="i2s_tfckd.*semckd|semckd.*i2s_tfckd"):
        get_method("hinton")
    with pytest.raises(SekdError, match="fusion_channels"):
        build("i2s_tfckd", student, teacher, fusion_chanels=8)
    with pytest.raises(SekdError, match="must be int"):
        build("i2s_tfckd", student, teacher, fusion_channels="8")
    with pytest.raises(SekdError, match="'batch', 'freq'"):
        build("i2s_tfckd", student, teacher, second_stream="time")
    with pytest.raises(SekdError, match="intra or inter"):
        build("i2s_tfckd", student, teacher, intra=False, inter=False)
    with pytest.raises(SekdError, match=r"\(none\)"):
        build("sp", student, teacher, p=2)


@pytest.mark.parametrize("name", [n for n in NAMES if ZERO[n]])
def test_zero_for_identical_taps_positive_otherwise(name, data):
    noisy, _ = data
    reference = seeded(0).eval()
    twin, other = copy.deepcopy(reference).train(), seeded(1)
    method = build(name, twin, reference)
    with torch.no_grad():
        _, teacher_taps = reference(noisy, return_taps=True)
    loss, _ = method(twin(noisy, return_taps=True)[1], teacher_taps)
    assert ZERO[name](method, loss).abs().item() < 1e-6
    loss, _ = method(other(noisy, return_taps=True)[1], teacher_taps)
    if name == "none":
        assert loss.item() == 0
    else:
        assert ZERO[name](method, loss).item() > 1e-6


def test_reviewkd_learns_identical_teacher(data):
    """ReviewKD's zero: training its fusion units alone against an identical teacher drives the loss down."""
    noisy, _ = data
    reference = seeded(0).eval()
    with torch.no_grad():
        _, taps = reference(noisy, return_taps=True)
    method = build("reviewkd", reference, reference)
    optimiser = torch.optim.Adam(method.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss, _ = method(taps, taps)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_student_and_method_never_teacher(name, data, teacher):
    noisy, _ = data
    student, live_teacher = seeded(0), copy.deepcopy(teacher).requires_grad_(True)
    method = build(name, student, live_teacher)
    _, teacher_taps = live_teacher(noisy, return_taps=True)  # with autograd on: the method must detach
    loss, terms = method(student(noisy, return_taps=True)[1], teacher_taps)
    if name == "none":
        assert loss.item() == 0 and not loss.requires_grad and method.extra_parameters() == 0
        return
    assert torch.isfinite(loss) and loss.item() > 0
    assert torch.allclose(sum(terms.values()), loss)
    loss.backward()
    assert student.network.enc1[0].weight.grad.abs().sum() > 0  # reaches the first student layer
    for param_name, param in method.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), param_name
    assert method.extra_parameters() == 0 or sum(p.grad.abs().sum() for p in method.parameters()) > 0
    assert all(p.grad is None for p in live_teacher.parameters())


@pytest.mark.parametrize("causal", [False, True], ids=["offline", "causal-student"])
@pytest.mark.parametrize("name", NAMES)
def test_distillation_steps_run_end_to_end(name, causal, data, teacher):
    """Student + method in one Adam; L = MSE(wave) + λ·KD with a wider, deeper (offline) teacher.

    A causal student has the same tap shapes, so every method distils it from the offline teacher.
    """
    noisy, clean = data
    student = seeded(0, causal=causal)
    assert student.network.args["causal"] is causal
    method = build(name, student, teacher)
    before = copy.deepcopy(teacher.state_dict())
    optimiser = torch.optim.Adam([*student.parameters(), *method.parameters()], lr=3e-3)
    losses = []
    for _ in range(4):
        with torch.no_grad():
            _, teacher_taps = teacher(noisy, return_taps=True)
        enhanced, student_taps = student(noisy, return_taps=True)
        kd, _ = method(student_taps, teacher_taps)
        loss = F.mse_loss(enhanced, clean) + 0.01 * kd
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert all(map(math.isfinite, losses))
    assert min(losses[1:]) < losses[0]
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


@pytest.mark.parametrize("name", NAMES)
def test_fixed_training_size(name, data, teacher):
    noisy, _ = data
    student = seeded(0)
    method = build(name, student, teacher)
    assert method.fixed_sizes == FIXED.get(name, set())
    with torch.no_grad():
        _, teacher_taps = teacher(noisy, return_taps=True)
        _, student_taps = student(noisy, return_taps=True)
    fewer_items = ({k: v[:2] for k, v in student_taps.items()}, {k: v[:2] for k, v in teacher_taps.items()})
    fewer_frames = ({k: v[:, :, :8] for k, v in student_taps.items()},
                    {k: v[:, :, :8] for k, v in teacher_taps.items()})
    for wrong, field in ((fewer_items, "batch"), (fewer_frames, "frames")):
        if field in method.fixed_sizes:
            with pytest.raises(SekdError, match=r"\(batch 3, 9 frames\) but got batch \d, \d frames"):
                method(*wrong)
        else:
            method(*wrong)


def test_tap_shapes_are_checked(data, teacher):
    noisy, _ = data
    student = seeded(0)
    with torch.no_grad():
        _, taps = student(noisy, return_taps=True)
    with pytest.raises(SekdError, match="teacher taps lack mid2"):
        build("at", student, teacher)(taps, taps)
    method = build("at", student, student)
    with pytest.raises(SekdError, match=r"teacher tap 'enc2': expected shape \[3, 8, 9, 64\], got \[3, 4, 9, 64\]"):
        method(taps, {**taps, "enc2": taps["enc2"][:, :4]})


def test_i2s_calibration_weights_sum_to_one_over_teacher_taps(data, teacher):
    noisy, _ = data
    student = seeded(0)
    method = build("i2s_tfckd", student, teacher)
    with torch.no_grad():
        _, teacher_taps = teacher(noisy, return_taps=True)
    method(student(noisy, return_taps=True)[1], teacher_taps)
    taps_per_set = {"encoder": (3, 3), "middle": (1, 2), "decoder": (3, 3), "inter": (3, 3)}
    assert set(method.last_alpha) == {f"{s}/{k}" for s in taps_per_set for k in ("time", "second")}
    for key, alpha in method.last_alpha.items():
        s, stream = key.split("/")
        assert alpha.shape == (BATCH, 9, *taps_per_set[s])  # (B, T, S, S_t): per item and frame
        assert torch.allclose(alpha.sum(-1), torch.ones(()), atol=1e-5)
        assert method.last_calibration[key].shape == taps_per_set[s]
    assert method.last_pair_losses["middle"].shape == (1, 2)


def pattern_taps(model, z):
    """Taps whose frame vectors are all ``z`` padded with zeros: every tap has the same similarities."""
    taps = {}
    for name, (c, d) in info(model).shapes.items():
        v = torch.zeros(BATCH, 9, c * d)
        v[..., :z.shape[-1]] = z
        taps[name] = v.reshape(BATCH, 9, c, d).permute(0, 2, 1, 3)  # (B, C, T, D)
    return taps


def test_i2s_loss_vanishes_when_all_distributions_coincide(teacher):
    """Every pair, cross pairs and the inter set included, compares equal distributions only without fusion."""
    student, z = seeded(0), torch.randn(BATCH, 9, 4)
    method = build("i2s_tfckd", student, teacher, fusion=False)
    assert method(pattern_taps(student, z), pattern_taps(teacher, z))[0].item() < 1e-6
    assert method(pattern_taps(student, z), pattern_taps(teacher, torch.randn(BATCH, 9, 4)))[0].item() > 1e-6
    fused = build("i2s_tfckd", student, teacher)
    assert fused(pattern_taps(student, z), pattern_taps(teacher, z))[1]["inter"].item() > 1e-6


@pytest.mark.parametrize("options, terms, streams", [
    ({}, ("encoder", "middle", "decoder", "inter"), ("time", "second")),
    ({"second_stream": "freq"}, ("encoder", "middle", "decoder", "inter"), ("time", "second")),
    ({"normalise": "last-axis"}, ("encoder", "middle", "decoder", "inter"), ("time", "second")),
    ({"intra": False}, ("inter",), ("time", "second")),
    ({"inter": False}, ("encoder", "middle", "decoder"), ("time", "second")),
    ({"calibration": "uniform"}, ("encoder", "middle", "decoder", "inter"), ("time", "second")),
    ({"streams": "time"}, ("encoder", "middle", "decoder", "inter"), ("time",)),
    ({"streams": "second"}, ("encoder", "middle", "decoder", "inter"), ("second",)),
    ({"fusion": False}, ("encoder", "middle", "decoder", "inter"), ("time", "second")),
])
def test_i2s_options_and_ablations(options, terms, streams, data, teacher):
    noisy, _ = data
    student = seeded(0)
    method = build("i2s_tfckd", student, teacher, **options)
    with torch.no_grad():
        _, teacher_taps = teacher(noisy, return_taps=True)
    loss, got = method(student(noisy, return_taps=True)[1], teacher_taps)
    assert tuple(got) == terms and torch.isfinite(loss) and loss.item() > 0
    assert {key.split("/")[1] for key in method.last_alpha} == set(streams)
    if options.get("calibration") == "uniform":
        assert all(torch.allclose(a, 1 / a.shape[-1] * torch.ones(())) for a in method.last_alpha.values())
    loss.backward()
    assert all(p.grad is not None for p in method.parameters() if p.requires_grad)
    if options.get("calibration") == "uniform":  # teacher fusion units: no keys, so frozen
        assert not any(p.requires_grad for p in method.fusion["t"].parameters())
    if options.get("second_stream") == "freq":
        assert method.last_alpha["encoder/second"].shape == (BATCH, 64, 3, 3)  # per bin, at the bottleneck D


@pytest.mark.parametrize("fusion, expected", [(True, 7 + 8 + 6), (False, 7 + 8)])
def test_i2s_similarities_computed_once_per_tap(fusion, expected, monkeypatch, data, teacher):
    noisy, _ = data
    student = seeded(0)
    method = build("i2s_tfckd", student, teacher, fusion=fusion)
    calls = []
    original = I2STFCKD._stats
    monkeypatch.setattr(I2STFCKD, "_stats", lambda self, x, **kw: calls.append(x.shape) or original(self, x, **kw))
    with torch.no_grad():
        _, teacher_taps = teacher(noisy, return_taps=True)
        method(student(noisy, return_taps=True)[1], teacher_taps)
    assert len(calls) == expected  # 7 student taps, 8 teacher taps, 3 + 3 representatives


@pytest.mark.parametrize("second_stream", ["batch", "freq"])
def test_i2s_teacher_values_detached_keys_not(second_stream, teacher):
    """§3.6: teacher representatives feed the keys with gradient but the values without."""
    student = seeded(0)
    method = build("i2s_tfckd", student, teacher, second_stream=second_stream)
    x = torch.randn(BATCH, 16, 9, 64, requires_grad=True)
    for detach_values in (True, False):
        for gram, dist in method._stats(x, detach_values=detach_values).values():
            assert gram.requires_grad and dist.requires_grad is not detach_values


def test_i2s_checkpointed_fusion_gives_the_same_loss_and_gradients(data, teacher):
    noisy, _ = data
    student = seeded(0)
    with torch.no_grad():
        _, teacher_taps = teacher(noisy, return_taps=True)
    grads = []
    for checkpoint in (True, False):
        torch.manual_seed(5)
        method = build("i2s_tfckd", student, teacher, checkpoint=checkpoint)
        student.zero_grad()
        loss, _ = method(student(noisy, return_taps=True)[1], teacher_taps)
        loss.backward()
        grads.append([loss, student.network.enc1[0].weight.grad.clone(), *(p.grad for p in method.parameters())])
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(*grads))
