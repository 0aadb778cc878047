"""GTCRN's one-frame ONNX graph (sekd.models.gtcrn_step): the PyTorch step's results, with few operators."""

from collections import Counter

import numpy as np
import onnx
import pytest
import torch

from sekd.export import export_step
from sekd.models import build_enhancer
from sekd.runtime import onnx_session
from sekd.step import CausalStep

from test_streaming import one_thread  # noqa: F401  (autouse fixture)


def trained_looking(model):
    """Eval mode with BatchNorm statistics and PReLU slopes away from their defaults, as after training."""
    torch.manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
            elif isinstance(module, torch.nn.PReLU):
                module.weight.uniform_(-0.5, 0.5)
    return model.eval()


@pytest.mark.parametrize("preset, in_channels, signal_args", [
    ("gtcrn", 1, None), ("gtcrn-l", 2, None), ("gtcrn", 1, {"n_fft": 256, "hop": 128})])
def test_the_graph_steps_as_pytorch_does(preset, in_channels, signal_args):
    model = trained_looking(build_enhancer(preset, in_channels=in_channels, signal_args=signal_args))
    step = CausalStep(model.network, 0).eval()
    names = step.state_names()
    session = onnx_session(export_step(model))
    bins = model.signal.bins
    state, onnx_state = step.initial_state(1, bins), [s.numpy() for s in step.initial_state(1, bins)]
    generator = torch.Generator().manual_seed(1)
    for _ in range(12):  # past every history length (dilation 5: 10 frames)
        feats = torch.randn(1, 2 * in_channels, 1, bins, generator=generator)
        with torch.no_grad():
            mask, *state = step(feats, *state)
        got_mask, *onnx_state = session.run(None, {"feats": feats.numpy(), **dict(zip(names, onnx_state))})
        np.testing.assert_allclose(got_mask, mask.numpy(), atol=2e-5, rtol=1e-5)
        for name, got, want in zip(names, onnx_state, state):
            np.testing.assert_allclose(got, want.numpy(), atol=2e-5, rtol=1e-5, err_msg=name)
    assert np.abs(mask.numpy()).max() > 0.1


def test_the_graph_has_few_operators():
    """The one-frame graph, not the trace (~1000 exported nodes, ~240 after onnxruntime's optimisations)."""
    graph = onnx.load_from_string(export_step(build_enhancer("gtcrn").eval())).graph
    ops = Counter(node.op_type for node in graph.node)
    assert sum(ops.values()) <= 140
    assert ops["GRU"] == 10 and ops["BatchNormalization"] == 0 and ops["Shape"] == 0
