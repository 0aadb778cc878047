"""The position-selective I²S-TFCKD fusion chain against computing every position (CPU).

    python benchmarks/fusion_chain.py

Both paths give the same values and gradients (tests/test_fusion.py). Per chain (encoder:
enc1 -> enc2 -> enc3; decoder: dec3 -> dec2 -> dec1) and size, prints the matmul and
convolution FLOPs of a forward and of a forward + backward (``torch.utils.flop_counter``,
hardware-neutral) and the best of 5 wall times of forward + backward on one thread.
"""

from __future__ import annotations

import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from sekd.distill.fusion import FusionChain

SIZES = [(8, 10, 128, 128), (8, 126, 32, 32)]  # batch, frames, width C, fusion width m


def measure(chain: FusionChain, feats: list[torch.Tensor]) -> tuple[float, float, float]:
    with FlopCounterMode(display=False) as forward:
        chain(feats)
    with FlopCounterMode(display=False) as both:
        chain(feats)[-1].sum().backward()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        chain(feats)[-1].sum().backward()
        times.append(time.perf_counter() - start)
    return forward.get_total_flops() / 1e9, both.get_total_flops() / 1e9, min(times)


def main() -> None:
    torch.set_num_threads(1)
    print("| batch | frames | C = m | chain | selective GFLOP fwd / fwd+bwd | every position GFLOP fwd / fwd+bwd "
          "| FLOP ratio | selective ms | every position ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for batch, frames, c, m in SIZES:
        for name, taps in {"encoder": [(c, 129), (c, 64), (c, 64)], "decoder": [(2, 257), (c, 129), (c, 64)]}.items():
            torch.manual_seed(0)
            chain = FusionChain([ch for ch, _ in taps], m, c, norm="instance", every_output=False)
            feats = [torch.randn(batch, ch, frames, bins, requires_grad=True) for ch, bins in taps]
            selective = measure(chain, feats)
            chain.selective = False
            plain = measure(chain, feats)
            print(f"| {batch} | {frames} | {c} | {name} | {selective[0]:.2f} / {selective[1]:.2f} | "
                  f"{plain[0]:.2f} / {plain[1]:.2f} | {selective[1] / plain[1]:.2f} | {selective[2] * 1e3:.0f} | "
                  f"{plain[2] * 1e3:.0f} |", flush=True)


if __name__ == "__main__":
    main()
