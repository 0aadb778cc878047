"""GTCRN's one-frame module for eager streaming (models/gtcrn_step.OneFrameGTCRN) against the step it stands for."""

import pytest
import torch

from sekd.models.gtcrn import GTCRN, band_layout
from sekd.models.gtcrn_step import OneFrameGTCRN
from sekd.step import CausalStep

from test_gtcrn import with_running_statistics


@pytest.mark.parametrize("args", [dict(), dict(in_channels=2, channels=8, layers=1), dict(channels=12, layers=3),
                                  band_layout(256)])
def test_one_frame_module_and_its_frozen_trace_equal_the_step(args):
    torch.manual_seed(0)
    net = with_running_statistics(GTCRN(**args))
    step = CausalStep(net, cache_frames=0)
    frozen = step.frozen(net.in_channels, net.bins)
    assert isinstance(frozen, torch.jit.ScriptModule)
    lean = OneFrameGTCRN(net)
    # A state away from zero, so that every history frame and GRU state takes part.
    start = [s + 0.5 * torch.randn_like(s) for s in step.initial_state(1, net.bins)]
    states = {"step": start, "lean": start, "frozen": start}
    modules = {"step": step, "lean": lean, "frozen": frozen}
    with torch.inference_mode():
        for _ in range(6):
            feats = torch.randn(1, 2 * net.in_channels, 1, net.bins)
            outs = {k: modules[k](feats, *states[k]) for k in modules}
            for k in ("lean", "frozen"):
                assert len(outs[k]) == len(outs["step"])
                for a, b in zip(outs[k], outs["step"]):
                    assert a.shape == b.shape
                    torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-5)
            states = {k: list(v[1:]) for k, v in outs.items()}
    assert outs["step"][0].abs().max() > 0.1  # not trivially equal


def test_frozen_step_sees_the_weights_when_frozen():
    torch.manual_seed(1)
    net = with_running_statistics(GTCRN(channels=8, layers=1))
    step = CausalStep(net, cache_frames=0)
    feats = torch.randn(1, 2, 1, 257)
    state = step.initial_state(1, 257)
    before = step.frozen(1, 257)(feats, *state)[0]
    with torch.no_grad():
        net.dec5.bias.add_(1.0)
    after = step.frozen(1, 257)(feats, *state)[0]
    torch.testing.assert_close(after, step(feats, *state)[0], atol=2e-5, rtol=1e-5)
    assert not torch.allclose(before, after)
