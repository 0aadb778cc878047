"""How fast does GTCRN fit one fixed batch (8 × 1 s training crops), by how its mask head starts?

    python results/schedule-probes/fit_one_batch.py      # about 3 minutes on 2 cores

Prints the batch's SI-SDR (dB) at steps 0, 25, 50, 75 and 100 of Adam (lr 2e-3, the study's
loss and clipping) for GTCRN as built (the mask starts as a pass-through) and with the mask
head's bias drawn as PyTorch draws it (a near-zero mask of random phase), beside the input's.
"""

import torch

from sekd.config import LossConfig
from sekd.data.datasets import CropDataset, list_pairs
from sekd.losses import SELoss
from sekd.metrics import si_sdr_torch
from sekd.models import build_enhancer

torch.set_num_threads(2)
crops = CropDataset(list_pairs("data/builtin", "train"), 16000)
noisy, clean = map(torch.stack, zip(*[crops[(i * 37) % len(crops)] for i in range(8)]))
print(f"input: {si_sdr_torch(noisy[:, 0], clean).mean().item():.2f} dB")


def fit(name: str, pass_through: bool, steps: int = 101) -> None:
    torch.manual_seed(0)
    model = build_enhancer("gtcrn")
    if not pass_through:
        head = model.network.dec5                        # a transposed conv: weight (in, out, 1, 5)
        bound = head.weight[0].numel() ** -0.5           # PyTorch's 1 / sqrt(fan_in) for this layout
        torch.nn.init.uniform_(head.bias, -bound, bound)
    loss_fn = SELoss(LossConfig(), model.signal)
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    scores = []
    for step in range(steps):
        loss, terms = loss_fn(model(noisy), clean)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        if step % 25 == 0:
            scores.append(f"{-terms['si_sdr'].item():.2f}")
    print(f"{name}: {' '.join(scores)}", flush=True)


fit("pass-through start", True)
fit("PyTorch's bias draw", False)
