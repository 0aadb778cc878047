"""The I²S-TFCKD fusion chain computes only the positions its last unit reads; it must equal
the plain unit-by-unit chain at full resolution, in value and in every gradient."""

import pytest
import torch

from sekd.distill.fusion import FusionChain, nearest_index
from torch.nn import functional as F


def full_resolution(chain: FusionChain, feats: list[torch.Tensor]) -> torch.Tensor:
    out, residual = None, None
    for unit, x in zip(chain.units, feats):
        out, residual = unit(x, residual)
    return out


@pytest.mark.parametrize("channels, shapes", [
    ([2, 16, 16], [(7, 257), (7, 129), (7, 64)]),   # decoder chain: dec3 → dec2 → dec1
    ([16, 16, 16], [(7, 129), (7, 64), (7, 64)]),   # encoder chain: enc1 → enc2 → enc3
    ([16, 16], [(9, 64), (5, 33)]),                 # fewer frames as well as bins
    ([16], [(7, 64)]),                              # one middle layer: a single unit
])
def test_selective_chain_equals_full_resolution(channels, shapes):
    torch.manual_seed(0)
    chain = FusionChain(channels, 12, 16, norm="instance", every_output=False)
    for p in chain.parameters():  # away from the initial values, so that affine terms matter
        p.data.add_(0.1 * torch.randn_like(p))
    feats = [(3 * torch.randn(3, c, *s) + 1).requires_grad_() for c, s in zip(channels, shapes)]
    fast, = chain(feats)
    slow = full_resolution(chain, feats)
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)
    weights = torch.randn_like(slow)
    inputs = [*feats, *chain.parameters()]
    fast_grads = torch.autograd.grad((fast * weights).sum(), inputs)
    slow_grads = torch.autograd.grad((slow * weights).sum(), inputs)
    for a, b in zip(fast_grads, slow_grads):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4 * b.abs().max().item())


@pytest.mark.parametrize("size_in, size_out", [(257, 129), (129, 64), (64, 64), (5, 9)])
def test_nearest_index_matches_interpolate(size_in, size_out):
    x = torch.randn(1, 1, size_in)
    expected = F.interpolate(x, size=size_out, mode="nearest")[0, 0]
    assert torch.equal(x[0, 0, nearest_index(size_in, size_out, x.device)], expected)
