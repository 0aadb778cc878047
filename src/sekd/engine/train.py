"""``sekd train``: data loaders, callbacks, loggers and the Lightning Trainer.

Resuming: checkpoints go to ``<out_dir>/checkpoints`` (``last.ckpt`` at every validation,
``best.ckpt`` by validation PESQ-WB); a run started again with the same ``out_dir``
continues from ``last.ckpt``. Several GPUs or nodes come from Lightning's DDP
(``train.devices``, ``train.strategy``, ``train.num_nodes``); there is no code of ours for it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch.utils.data import DataLoader

from ..audio import SAMPLE_RATE, atomic_write_text
from ..config import Config
from ..data.datasets import CropDataset, WholeFileDataset, list_pairs
from ..errors import SekdError
from .module import EnhancementModule

log = logging.getLogger("sekd")


def make_loaders(cfg: Config) -> tuple[DataLoader, DataLoader]:
    d = cfg.data
    train_pairs = list_pairs(d.train, "train")
    valid_pairs = list_pairs(d.valid or d.train, "valid")
    if d.valid_files is not None:
        valid_pairs = valid_pairs[: d.valid_files]
    if len(train_pairs) < d.batch_size:
        raise SekdError(f"{d.train}: {len(train_pairs)} training mixtures, fewer than one batch of {d.batch_size}")
    m = cfg.model.in_channels
    train = DataLoader(CropDataset(train_pairs, int(d.crop_seconds * SAMPLE_RATE), m), batch_size=d.batch_size,
                       shuffle=True, drop_last=True,  # fixed batch size: some KD methods need it
                       num_workers=d.num_workers, persistent_workers=d.num_workers > 0)
    valid = DataLoader(WholeFileDataset(valid_pairs, m), batch_size=1, num_workers=d.num_workers)
    return train, valid


def run_training(module_class: type[EnhancementModule], cfg: Config) -> Path:
    """Seed, build ``module_class`` from ``cfg`` and fit it as ``cfg.train`` says; returns the best checkpoint."""
    t = cfg.train
    L.seed_everything(t.seed, workers=True, verbose=False)  # before the module: it fixes the initial weights
    module = module_class(cfg.to_dict())
    # Again after the build: a distillation method's modules draw from the same generator, and
    # the batch order and crop offsets must not depend on how much they drew (same data for
    # every method of a study).
    L.seed_everything(t.seed, workers=True, verbose=False)
    if t.threads:
        torch.set_num_threads(t.threads)
    out = Path(t.out_dir)
    ckpt_dir = out / "checkpoints"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", cfg.to_yaml())
    train_loader, valid_loader = make_loaders(cfg)
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val/pesq_wb", mode="max",
                           save_top_k=1, save_last=True, auto_insert_metric_name=False)
    trainer = L.Trainer(
        max_steps=t.max_steps, val_check_interval=min(t.val_every, t.max_steps), check_val_every_n_epoch=None,
        gradient_clip_val=t.grad_clip or None, accelerator=t.accelerator, devices=t.devices,
        strategy=t.strategy, num_nodes=t.num_nodes, precision=t.precision, log_every_n_steps=t.log_every,
        callbacks=[best], default_root_dir=out, num_sanity_val_steps=0,
        logger=[TensorBoardLogger(out, name="tensorboard", version=""), CSVLogger(out, name="csv", version="")],
    )
    last = ckpt_dir / "last.ckpt"
    resume = last if t.resume and last.is_file() else None
    if resume:
        log.info("resuming from %s", resume)
    trainer.fit(module, train_loader, valid_loader, ckpt_path=resume)
    trainer.save_checkpoint(last)  # so that starting a finished run again is a no-op
    return Path(best.best_model_path) if best.best_model_path else last


def train(config: Config) -> Path:
    """Train a model from scratch (or resume); returns the best checkpoint's path."""
    return run_training(EnhancementModule, config)
