"""Where does a weak seed come from? Train the wide study's no-KD student briefly with the initial weights of
one seed and the example draws of another, from a chosen start of the mask head, and print the mean
training loss over each 20 steps. Run from the repository root (after `sekd data build data/builtin`):

    python3 results/schedule-probes/mask_start_probe.py INIT_SEED DATA_SEED STEPS [START]

START: `pass-through` (sekd's DPDCRN: bias (1, 0), weights × 0.1; the default), `pytorch` (PyTorch's own
initialisation), `gtcrn` (bias (2, 0), weights as drawn) or `bias2-small` (bias (2, 0), weights × 0.1).
"""
import sys

import lightning as L
import numpy as np
import torch

import sekd.models.dpdcrn as dpdcrn
from sekd.engine.module import EnhancementModule
from sekd.engine.train import make_loaders
from sekd.study import Run, load_study, run_config

STARTS = {"pass-through": (1.0, 0.1), "pytorch": None, "gtcrn": (2.0, 1.0), "bias2-small": (2.0, 0.1)}

init_seed, data_seed, steps = (int(a) for a in sys.argv[1:4])
start = sys.argv[4] if len(sys.argv) > 4 else "pass-through"
bias_scale = STARTS[start]
if bias_scale is None:  # the weights exactly as PyTorch draws them: skip the pass-through start
    dpdcrn.start_as_pass_through = lambda *args, **kwargs: None
else:
    dpdcrn.MASK_START_BIAS, dpdcrn.MASK_START_SCALE = bias_scale
torch.set_num_threads(1)
# The wide study's no-KD student, its config resolved as the study resolves it; the draws follow train.seed.
cfg = run_config(load_study("configs/study/cpu-wide.yaml"), Run("none", data_seed, "runs/probe/mask-start", None))
L.seed_everything(init_seed, verbose=False)  # as sekd train does: the seed, then the module
module = EnhancementModule(cfg.to_dict())
L.seed_everything(data_seed, verbose=False)
train, _ = make_loaders(cfg)
losses = []


class Record(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        losses.append(float(outputs["loss"]))


trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, limit_val_batches=0, callbacks=[Record()],
                    gradient_clip_val=cfg.train.grad_clip)
trainer.fit(module, train)
windows = [round(float(np.mean(losses[i:i + 20])), 3) for i in range(0, len(losses), 20)]
print(f"start {start}, weights of seed {init_seed}, draws of seed {data_seed}: training loss per 20 steps {windows}")
