"""Lightning module for supervised SE training, built from a config dict.

Built from the plain config (not from ready objects), so ``load_from_checkpoint`` and
``sekd.checkpoint.load_enhancer`` both rebuild it from the checkpoint alone. The
distillation module (sekd.engine.distill) extends it by adding L_KD to the same step.
"""

from __future__ import annotations

import math

import lightning as L
import torch

from .. import metrics
from ..checkpoint import enhancer_payload
from ..config import Config, config_from_dict
from ..errors import SekdError
from ..losses import SELoss
from ..models import SpeechEnhancer, build_enhancer


def build_model(cfg: Config, where: str = "config") -> SpeechEnhancer:
    """The model of ``cfg.model``: a preset, or the user's class (``model.class``) with its args and taps."""
    m = cfg.model
    if m.class_ is None:
        if m.args is not None or m.taps is not None:
            raise SekdError(f"{where}: model.args and model.taps go with model.class (your own network)")
        return build_enhancer(m.preset, in_channels=m.in_channels, causal=m.causal, signal_args=cfg.signal.to_dict(),
                              channels=m.channels, layers=m.layers, lookback=m.lookback)
    preset_only = [k for k in ("channels", "layers", "lookback") if getattr(m, k) is not None]
    if preset_only:
        raise SekdError(f"{where}: model.{', model.'.join(preset_only)} apply to presets; with model.class give the "
                        f"network's own arguments in model.args")
    spec = {"class": m.class_, "args": m.args or {}, "taps": m.taps, "in_channels": m.in_channels}
    return SpeechEnhancer(spec, cfg.signal.to_dict(), where=where)


class EnhancementModule(L.LightningModule):
    def __init__(self, config: dict):
        super().__init__()
        self.save_hyperparameters({"config": config})
        self.cfg = config_from_dict(config)
        self.model = build_model(self.cfg)
        self.se_loss = SELoss(self.cfg.loss, self.model.signal)

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        return self.model(noisy)

    def training_loss(self, noisy: torch.Tensor, clean: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """L_SE and its named terms; the distillation module adds λ·L_KD here."""
        loss, terms = self.se_loss(self.model(noisy), clean)
        return loss, {f"se/{k}": v for k, v in terms.items()}

    def training_step(self, batch, batch_idx):
        noisy, clean = batch                      # (B, M, N), (B, N)
        loss, terms = self.training_loss(noisy, clean)
        self.log("train/loss", loss, prog_bar=True)
        self.log_dict({f"train/{k}": v for k, v in terms.items()})
        return loss

    VALIDATION_METRICS = ("si_sdr", "pesq_wb", "stoi")

    def on_validation_epoch_start(self) -> None:
        self._val_sums = torch.zeros(2 * len(self.VALIDATION_METRICS), dtype=torch.float64)  # sum, count per metric

    def validation_step(self, batch, batch_idx):
        noisy, clean = batch                      # whole file, batch size 1
        est = self.model(noisy)[0].float().cpu().numpy()
        ref = clean[0].float().cpu().numpy()
        # Only the three metrics validation logs: the full set (PESQ-NB, ESTOI) would double its cost.
        scores = {"si_sdr": metrics.si_sdr(est, ref), "pesq_wb": metrics.pesq(est, ref), "stoi": metrics.stoi(est, ref)}
        for i, key in enumerate(self.VALIDATION_METRICS):
            if not math.isnan(scores[key]):
                self._val_sums[2 * i] += scores[key]
                self._val_sums[2 * i + 1] += 1

    def on_validation_epoch_end(self) -> None:
        # Sums and counts of the defined values over all ranks: a rank whose files gave no PESQ
        # must neither stall the others (a key logged on some ranks only) nor pull the mean.
        totals = self.trainer.strategy.reduce(self._val_sums.to(self.device), reduce_op="sum").cpu()
        for i, key in enumerate(self.VALIDATION_METRICS):
            total, count = totals[2 * i].item(), totals[2 * i + 1].item()
            # NaN when no file gave a value: ModelCheckpoint ranks it worst.
            self.log(f"val/{key}", total / count if count else float("nan"), prog_bar=key == "pesq_wb",
                     sync_dist=True)  # equal on every rank already; says so to Lightning

    def configure_optimizers(self):
        t = self.cfg.train
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)

        def lr_factor(step: int) -> float:  # linear warm-up, then cosine decay to lr_min
            if step < t.warmup_steps:
                return (step + 1) / t.warmup_steps
            progress = min(1.0, (step - t.warmup_steps) / max(1, t.max_steps - t.warmup_steps))
            floor = t.lr_min / t.lr
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["sekd"] = enhancer_payload(self.model)
