"""``sekd train``: data loaders, callbacks, loggers and the Lightning Trainer.

Resuming: checkpoints go to ``<out_dir>/checkpoints`` (``last.ckpt`` at every validation
and on SIGTERM/SIGINT, ``best.ckpt`` by validation PESQ-WB), each written atomically; a run
started again with the same ``out_dir`` continues from ``last.ckpt`` (or, when that file is
damaged, the newest checkpoint that loads; see state.py). The batch order and crops are a
pure function of (seed, step) (``EpochBatchSampler``), so a resumed run trains on exactly the
batches the uninterrupted run would have; with ``data.mixing: online`` so is every mixture
(``OnlineMixDataset``). Several GPUs or nodes come from Lightning's DDP
(``train.devices``, ``train.strategy``, ``train.num_nodes``); there is no code of ours for it.

A run folder belongs to one run at a time: the process that trains into it holds a
``flock`` on ``<out_dir>/.sekd-run.lock`` (which holds its PID) from its first write to its
end, and a second ``sekd train``/``distill`` into the same folder is refused, naming that
PID (:func:`run_folder_lock`); the kernel releases the lock however the process ends. A
write the system refuses (disk full, read-only) stops training with one line naming the
file (:class:`~sekd.errors.WriteFailed`, exit 1); the checkpoints written before stay whole.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, Timer
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException
from torch.utils.data import DataLoader

from ..audio import SAMPLE_RATE, atomic_write_text
from ..checkpoint import read_checkpoint_file
from ..config import Config, build_section
from ..data.checks import MIN_SAMPLES, require_good_pairs, require_good_pools
from ..data.datasets import CropDataset, EpochBatchSampler, ResumableLoader, ShardSampler, WholeFileDataset, list_pairs
from ..data.layouts import scan_pools
from ..data.mixing import OnlineMixDataset
from ..errors import SekdError, WriteFailed
from ..models.base import trust_classes
from .module import EnhancementModule
from .progress import progress_callbacks
from .state import (AtomicCheckpointIO, EventsLogger, Interrupted, MetricsCSVLogger, SaveOnSignal, StopWhenFlat,
                    choose_resume_checkpoint, write_failure)

log = logging.getLogger("sekd")


def make_loaders(cfg: Config) -> tuple[DataLoader, DataLoader]:
    d = cfg.data
    m, crop = cfg.model.in_channels, int(d.crop_seconds * SAMPLE_RATE)
    min_samples = max(MIN_SAMPLES, cfg.signal.n_fft)
    # Every file up front: a NaN file would fail only when the shuffled loader reaches it, a
    # tiny validation file would crash every validation.
    if d.mixing == "online":
        train_set = online_training_set(cfg)
    else:
        train_pairs = list_pairs(d.train, "train")
        require_good_pairs(train_pairs, f"{d.train}: training data", m, min_samples=min_samples)
        train_set = CropDataset(train_pairs, crop, m)
    valid_pairs = validation_pairs(cfg)
    require_good_pairs(valid_pairs, f"{d.valid or d.train}: validation data", m, min_samples=min_samples)
    if len(train_set) < d.batch_size:
        what = "examples an epoch (crops in the clean pool)" if d.mixing == "online" else "training mixtures"
        raise SekdError(f"{d.pools or d.train if d.mixing == 'online' else d.train}: {len(train_set)} {what}, "
                        f"fewer than one batch of {d.batch_size}")
    batches = EpochBatchSampler(len(train_set), d.batch_size, cfg.train.seed)
    train = ResumableLoader(train_set, batch_sampler=batches, num_workers=d.num_workers,
                            persistent_workers=d.num_workers > 0)
    valid = DataLoader(WholeFileDataset(valid_pairs, m), batch_size=1, sampler=ShardSampler(len(valid_pairs)),
                       num_workers=d.num_workers)
    return train, valid


def online_training_set(cfg: Config) -> OnlineMixDataset:
    """``data.mixing: online``: the pools of ``data.pools`` (or ``data.train``), every file checked, as a dataset."""
    d = cfg.data
    source = d.pools or d.train
    pools = scan_pools(source)
    if d.rir_prob == 0:  # no rooms: the impulse responses are neither read nor checked
        pools.files.pop("rir", None)
    pools = require_good_pools(pools, f"{source}: training pools", int(d.crop_seconds * SAMPLE_RATE),
                               cfg.model.in_channels, skip_bad=d.skip_bad)
    return OnlineMixDataset(pools, int(d.crop_seconds * SAMPLE_RATE), cfg.model.in_channels, d.snr_range,
                            d.level_range, d.rir_prob, d.noises_per_example)


def validation_pairs(cfg: Config) -> list:
    """The validation files: ``data.valid``, else the valid split of ``data.train`` (fixed files either way)."""
    d = cfg.data
    try:
        pairs = list_pairs(d.valid or d.train, "valid")
    except SekdError as exc:
        if d.valid or d.mixing == "fixed":
            raise
        raise SekdError(f"data.valid: needed with data.mixing=online when data.train ({d.train}) holds no validation "
                        f"pairs ({exc})") from None
    return pairs if d.valid_files is None else pairs[: d.valid_files]


def check_same_model(ckpt: Path, cfg: Config) -> None:
    """Refuse to resume ``ckpt`` with another model or signal path than it was trained with."""
    stored = read_checkpoint_file(ckpt).get("hyper_parameters", {}).get("config", {})
    new = cfg.to_dict()
    changed = [f"{section}.{key}: {old!r} -> {new[section].get(key)!r}" for section in ("model", "signal")
               for key, old in stored.get(section, {}).items() if new[section].get(key) != old]
    if changed:
        raise SekdError(f"train.out_dir={cfg.train.out_dir}: holds a run of another model ({'; '.join(changed)}); "
                        "use another train.out_dir, or train.resume=false to start it over")


def trust_config_classes(cfg: Config) -> None:
    """Trust, for this process, the classes a config the user runs names: ``model.class`` (the user chose
    to run that network's code) and ``distill.trust_classes`` (classes the teacher checkpoint may name).

    Checkpoints written by such a run name that class, so loading them in another process needs
    the user's trust again (``--trust-class``, ``SEKD_TRUST_CLASSES``).
    """
    if cfg.model.class_:
        trust_classes([cfg.model.class_], "config: model.class")
    if "distill" in cfg.extra:
        from .distill import DistillConfig  # distill.py imports this module
        named = build_section("distill", DistillConfig, cfg.extra["distill"], "config").trust_classes
        trust_classes(named, "config: distill.trust_classes")


LOCK_FILE = ".sekd-run.lock"


def launched_rank() -> int:
    """This process's global rank as its launcher set it (torchrun, SLURM, Lightning's DDP children); 0
    for a process started by the user, the one that claims the run folder."""
    for variable in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(variable, "").isdigit():
            return int(os.environ[variable]) + (0 if variable == "RANK" else _node_rank())
    return _node_rank()


def _node_rank() -> int:
    node = os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", "0"))
    return int(node) if node.isdigit() else 0


@contextmanager
def run_folder_lock(out: Path) -> Iterator[None]:
    """Hold ``out`` for this run: a non-blocking ``flock`` on ``out/.sekd-run.lock``, which holds our PID.

    Another process holding it is refused with a SekdError naming its PID. The ranks of one DDP
    run share the folder: only rank 0 (the process the user started) claims it.
    """
    path = out / LOCK_FILE
    if launched_rank() != 0:
        yield
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
    except OSError as exc:
        raise WriteFailed.of(path, exc) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "unknown"
            raise SekdError(f"{out}: in use by another sekd run (PID {pid}); wait for it or choose another "
                            f"train.out_dir") from None
        try:
            handle.truncate(0)
            handle.write(f"{os.getpid()}\n")
            handle.flush()
        except OSError as exc:
            raise WriteFailed.of(path, exc) from None
        yield  # closing the file releases the lock


def run_training(module_class: type[EnhancementModule], cfg: Config) -> Path:
    """Seed, build ``module_class`` from ``cfg`` and fit it as ``cfg.train`` says; returns the best checkpoint.

    Raises :class:`~sekd.engine.state.Interrupted` after saving ``last.ckpt`` when SIGTERM or
    SIGINT stopped it, and :class:`~sekd.errors.WriteFailed` when a file of the run could not be
    written.
    """
    t = cfg.train
    out = Path(t.out_dir)
    ckpt_dir = out / "checkpoints"
    if out.exists() and not out.is_dir():
        raise SekdError(f"train.out_dir={out}: an existing file, not a folder")
    if t.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise SekdError(f"train.accelerator={t.accelerator}: no CUDA GPU is available here; use cpu or auto")
    trust_config_classes(cfg)
    resume = choose_resume_checkpoint(ckpt_dir) if t.resume and ckpt_dir.is_dir() else None
    if resume:
        check_same_model(resume, cfg)
    L.seed_everything(t.seed, workers=True, verbose=False)  # before the module: it fixes the initial weights
    module = module_class(cfg.to_dict())
    # Again after the build, for anything else that draws from the global generator (the data
    # order and crops have their own seeds: same data for every method of a study).
    L.seed_everything(t.seed, workers=True, verbose=False)
    if t.threads:
        torch.set_num_threads(t.threads)
    train_loader, valid_loader = make_loaders(cfg)
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val/pesq_wb", mode="max",
                           save_top_k=1, save_last=True, auto_insert_metric_name=False,
                           enable_version_counter=False)  # best stays best.ckpt, the path the docs name
    last = ckpt_dir / "last.ckpt"
    on_signal = SaveOnSignal(last)
    stop = [StopWhenFlat(t.stop_when_flat, min(t.val_every, t.max_steps))] if t.stop_when_flat else []
    bar, progress = progress_callbacks()  # a live bar on a terminal, a line now and then in a log
    try:
        trainer = L.Trainer(
            max_steps=t.max_steps, val_check_interval=min(t.val_every, t.max_steps), check_val_every_n_epoch=None,
            gradient_clip_val=t.grad_clip or None, accelerator=t.accelerator, devices=t.devices,
            strategy=t.strategy, num_nodes=t.num_nodes, precision=t.precision, log_every_n_steps=t.log_every,
            callbacks=[best, on_signal, Timer(verbose=False), *stop, *progress],  # Timer: state.training_seconds
            enable_progress_bar=bar,
            default_root_dir=out, num_sanity_val_steps=0,
            plugins=[AtomicCheckpointIO()],
            use_distributed_sampler=False,  # our samplers shard by rank themselves (exact resume, no padding)
            logger=[EventsLogger(out, name="tensorboard", version=""),
                    # A fresh start replaces the metrics of a run whose checkpoints are gone (Lightning's way).
                    MetricsCSVLogger(out, name="csv", version="", append=bool(resume))],
        )
    except (MisconfigurationException, ValueError, RuntimeError) as exc:
        raise SekdError(f"train.accelerator={t.accelerator}, train.devices={t.devices}, train.strategy={t.strategy}, "
                        f"train.precision={t.precision}, train.num_nodes={t.num_nodes}: Lightning refuses them "
                        f"({exc})") from None
    with run_folder_lock(out):  # the run's first write
        atomic_write_text(out / "config.yaml", cfg.to_yaml())
        train_loader.batch_sampler.position = lambda: trainer.global_step  # restored before the first batch
        if resume:
            log.info("resuming from %s", resume)
        on_signal.install()
        try:
            trainer.fit(module, train_loader, valid_loader, ckpt_path=resume)
            trainer.save_checkpoint(last, weights_only=False)  # so that starting a finished run again is a no-op
        except SIGTERMException:
            raise Interrupted(on_signal.signum or signal.SIGTERM, on_signal.saved) from None
        except BaseException as exc:
            failure = write_failure(exc, out)
            if failure is None:
                raise
            raise failure from None
        finally:
            on_signal.uninstall()
    if on_signal.signum:  # the signal came as training ended: the run is complete, but say it was stopped
        raise Interrupted(on_signal.signum, last)
    # best.ckpt by name: Lightning forgets the best path of a run whose folder moved (a study run started from its
    # tuning run's checkpoints), and the callback never versions the name (always best.ckpt).
    return ckpt_dir / "best.ckpt" if (ckpt_dir / "best.ckpt").is_file() else last


def train(config: Config) -> Path:
    """Train a model from scratch (or resume); returns the best checkpoint's path."""
    return run_training(EnhancementModule, config)
