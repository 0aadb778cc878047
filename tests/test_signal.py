import pytest
import torch

from sekd import signal as sig


@pytest.mark.parametrize("hop, window", [(256, "hann"), (128, "hann"), (128, "hamming")])
def test_istft_inverts_stft(hop, window):
    cfg = sig.SignalConfig(hop=hop, window=window)
    x = torch.randn(2, 3, 16000 + 77)
    spec = sig.stft(x, cfg)
    assert spec.shape == (2, 3, 1 + x.shape[-1] // hop, 257)
    assert torch.allclose(sig.istft(spec, cfg, x.shape[-1]), x, atol=1e-5)


def test_compression_keeps_phase_and_compresses_magnitude():
    spec = torch.complex(torch.tensor([3.0, 0.0]), torch.tensor([4.0, 2.0]))
    out = sig.compress(spec, 0.5)
    assert torch.allclose(out.abs(), spec.abs() ** 0.5)
    assert torch.allclose(torch.angle(out), torch.angle(spec))
    assert sig.compress(spec, None) is spec


def test_features_stack_real_then_imaginary():
    cfg = sig.SignalConfig(compress=None)
    spec = torch.randn(1, 2, 5, 257, dtype=torch.complex64)
    f = sig.features(spec, cfg)
    assert f.shape == (1, 4, 5, 257)
    assert torch.equal(f[:, :2], spec.real) and torch.equal(f[:, 2:], spec.imag)


def test_polar_mask_gain_and_rotation():
    y = torch.full((1, 1, 1), 2.0 + 0.0j)
    big_real = torch.tensor([20.0, 0.0]).view(1, 2, 1, 1)         # |M| large, angle 0 -> pass through
    assert torch.allclose(sig.apply_polar_mask(big_real, y), y, atol=1e-5)
    quarter = torch.tensor([0.0, 20.0]).view(1, 2, 1, 1)          # angle 90° -> multiply by j
    assert torch.allclose(sig.apply_polar_mask(quarter, y), 2j * torch.ones_like(y), atol=1e-5)
    half_gain = torch.tensor([float(torch.atanh(torch.tensor(0.5))), 0.0]).view(1, 2, 1, 1)
    assert torch.allclose(sig.apply_polar_mask(half_gain, y).abs(), torch.tensor(1.0), atol=1e-4)
