"""Seed-1 probe: is the weak seed its initial weights or its data draws? 120 steps each."""
import sys, torch, lightning as L, numpy as np
sys.path.insert(0, "/work/main/src")
from sekd.config import load_config
from sekd.engine.module import EnhancementModule
from sekd.engine.train import make_loaders
torch.set_num_threads(1)
init_seed, data_seed, steps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
cfg = load_config("/work/main/results/study-wide/none/seed1/config.yaml")
cfg.train.seed = data_seed
L.seed_everything(init_seed, verbose=False)
module = EnhancementModule(cfg.to_dict())
if len(sys.argv) > 4 and sys.argv[4] == "bias2":  # GTCRN's pass-through start: real bias 2, weights as drawn
    with torch.no_grad():
        [m for m in module.modules() if hasattr(m, "dec3")][0].dec3.bias.copy_(torch.tensor([2.0, 0.0]))
if len(sys.argv) > 4 and sys.argv[4] == "small2":  # weights × 0.1, real bias 2
    with torch.no_grad():
        d3 = [m for m in module.modules() if hasattr(m, "dec3")][0].dec3
        d3.weight.mul_(0.1); d3.bias.copy_(torch.tensor([2.0, 0.0]))
if len(sys.argv) > 4 and sys.argv[4] == "maskinit":  # start near the identity mask: M ≈ (1, 0)
    with torch.no_grad():
        d3 = module.model.net.dec3 if hasattr(module.model, "net") else [m for m in module.modules() if hasattr(m, "dec3")][0].dec3
        d3.weight.mul_(0.1); d3.bias.copy_(torch.tensor([1.0, 0.0]))
L.seed_everything(data_seed, verbose=False)
train, _ = make_loaders(cfg)
losses = []
class Grab(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        losses.append(float(outputs["loss"] if isinstance(outputs, dict) else outputs))
tr = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
               limit_val_batches=0, callbacks=[Grab()], enable_model_summary=False, gradient_clip_val=cfg.train.grad_clip)
tr.fit(module, train)
w = [round(float(np.mean(losses[i:i + 20])), 3) for i in range(0, len(losses), 20)]
print(f"{sys.argv[4:]} init {init_seed} data {data_seed}: loss per 20 steps {w}", flush=True)
