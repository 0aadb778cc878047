"""The cheaper forms taken for speed give the same values: GTCRN's written ONNX graphs (models/gtcrn_step.py)
against the PyTorch model, the runtime's numpy signal path against sekd.signal, and the session
choice for small steps.

Each graph form depends on the weights (PReLU slopes) or on the band layout (enc1's edge
bins), so the ranges that pick them are tested apart; test_gtcrn_onnx.py and
test_offline_onnx.py test the graphs on trained-looking weights.
"""

from collections import Counter

import numpy as np
import onnx
import pytest
import torch

from sekd.export import export_step
from sekd.models import build_enhancer
from sekd import signal as sig
from sekd.runtime import OnnxEnhancer, OnnxStreamer, apply_polar_mask, sequence_features, step_session, stream_array

from test_offline_onnx import noisy, offline
from test_gtcrn_onnx import trained_looking
from test_streaming import one_thread  # noqa: F401  (autouse fixture)


def with_slopes(model, low: float, high: float):
    """``model`` with every PReLU slope drawn from [low, high]."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.PReLU):
                module.weight.copy_(low + (high - low) * torch.rand(module.weight.shape, generator=generator))
    return model


@pytest.mark.parametrize("low, high, form", [(0.0, 1.0, "Max"), (1.0, 1.6, "Min"), (-0.4, 1.3, "Relu")])
def test_offline_prelu_forms_equal_the_model(low, high, form):
    """Slopes in [0, 1]: max(x, a·x); all at least 1: min(x, a·x); else the Relu form."""
    model = with_slopes(trained_looking(build_enhancer("gtcrn")), low, high)
    data = export_step(model, offline=True)
    ops = Counter(node.op_type for node in onnx.load_from_string(data).graph.node)
    assert ops["PRelu"] == 0 and ops[form] >= 15
    audio = noisy(1, 12000)
    want = offline(model, audio)
    np.testing.assert_allclose(OnnxEnhancer(data)(audio), want, atol=1e-4)
    assert np.abs(want).max() > 1e-2


@pytest.mark.parametrize("preset, in_channels, signal_args", [
    ("gtcrn", 1, None), ("gtcrn-l", 2, None), ("gtcrn", 1, {"n_fft": 256, "hop": 128})])
def test_composed_enc1_equals_the_subband_path_at_the_edge_bins(preset, in_channels, signal_args):
    """enc1 on the subband features as one (1, 7) convolution: its first and last bins are corrected.

    Energy only in the lowest and highest bins makes the edge terms count: without the
    correction the output differs by far more than the tolerance.
    """
    model = trained_looking(build_enhancer(preset, in_channels=in_channels, signal_args=signal_args))
    t = np.arange(6000) / 16000
    edges = 0.3 * np.cos(2 * np.pi * 7900 * t) + 0.2 * np.cos(2 * np.pi * 5 * t)   # near Nyquist and DC
    audio = np.stack([edges * (1 + 0.1 * c) for c in range(in_channels)]).astype(np.float32)
    audio += 0.01 * noisy(in_channels, audio.shape[1])
    want = offline(model, audio)
    np.testing.assert_allclose(OnnxEnhancer(export_step(model, offline=True))(audio), want, atol=1e-4)
    # The per-hop graph (the one-hot subband convolution) agrees too.
    np.testing.assert_allclose(stream_array(OnnxStreamer(export_step(model)), audio), want, atol=1e-4)


@pytest.mark.parametrize("compress", [0.3, 0.5, 1.0, None])
def test_numpy_features_and_polar_mask_are_sekd_signals(compress):
    rng = np.random.default_rng(7)
    spec = (rng.standard_normal((2, 5, 257)) + 1j * rng.standard_normal((2, 5, 257))).astype(np.complex64)
    spec[:, 0, :4] = 0  # the compression's epsilon
    cfg = sig.SignalConfig(compress=compress)
    want = sig.features(torch.from_numpy(spec)[None], cfg).numpy()
    out = np.full((1, 4, 5, 257), np.nan, np.float32)
    assert sequence_features(spec, compress, out) is out
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-7)
    mask = rng.standard_normal((2, 5, 257)).astype(np.float32)
    mask[:, 1, :3] = 0  # the mask's epsilon
    want = sig.apply_polar_mask(torch.from_numpy(mask)[None], torch.from_numpy(spec[0])[None])[0].numpy()
    got = apply_polar_mask(mask, spec[0])
    assert got.dtype == np.complex64
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_small_steps_run_without_the_memory_arena():
    """GTCRN's step (inputs of some ten thousand values) without onnxruntime's arena, a DPDCRN student's with it."""
    torch.manual_seed(0)
    small = step_session(export_step(build_enhancer("gtcrn").eval()))
    large = step_session(export_step(build_enhancer("tiny", causal=True).eval()))
    assert not small.get_session_options().enable_cpu_mem_arena
    assert large.get_session_options().enable_cpu_mem_arena
