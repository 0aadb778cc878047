"""A training run's state on disk, made to survive kills, signals and strangers' files.

- :class:`AtomicCheckpointIO`: Lightning writes every checkpoint through ``audio.atomic_write``
  (temporary file beside the target, fsync, rename) and reads it with ``weights_only=True``.
- :func:`choose_resume_checkpoint`: ``last.ckpt`` when it loads, else the newest checkpoint of
  the run that does, with a warning.
- :func:`training_seconds`: the time a run has spent training, over all its resumed parts.
- :class:`SaveOnSignal`: SIGTERM and SIGINT stop training after the current step (and the
  validation that follows it, if any), save ``last.ckpt`` and end the command with 128 + the
  signal's number (143, 130).
- :class:`MetricsCSVLogger`: a resumed run adds to ``csv/metrics.csv`` instead of deleting it, and a
  refused write (disk full) leaves it whole.
- :class:`EventsLogger` and :func:`write_failure`: a write the system refuses, wherever in
  Lightning it happens, ends training as one :class:`~sekd.errors.WriteFailed` naming the file.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from lightning.fabric.loggers.csv_logs import _ExperimentWriter
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ..audio import append_whole, atomic_write_text, remove_stale_temps
from ..checkpoint import read_checkpoint_file, save_checkpoint_file
from ..errors import WRITE_ERRNOS, SekdError, WriteFailed

log = logging.getLogger("sekd")


class Interrupted(SekdError):
    """Training stopped by a signal after saving ``last.ckpt``; the CLI exits with ``exit_code``."""

    def __init__(self, signum: int, saved: Path | None):
        name = signal.Signals(signum).name
        where = f"saved {saved}; run the same command to resume" if saved else "nothing was saved"
        super().__init__(f"stopped by {name}: {where}")
        self.exit_code = 128 + signum


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        save_checkpoint_file(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only: bool | None = None) -> dict[str, Any]:
        return read_checkpoint_file(path, map_location if map_location is not None else "cpu")


def checkpoint_step(path: Path) -> int | None:
    """The global step stored in a training checkpoint, or None when the file does not load."""
    try:
        ckpt = read_checkpoint_file(path)
    except SekdError as exc:
        log.warning("warning: %s", exc)
        return None
    step = ckpt.get("global_step") if isinstance(ckpt, dict) else None
    return step if isinstance(step, int) and "loops" in ckpt else None


def training_seconds(path: Path) -> float | None:
    """Wall seconds a run spent fitting, summed over its resumed parts (the state Lightning's ``Timer``
    keeps in each checkpoint), or None when the checkpoint has none (saved before sekd kept it)."""
    try:
        seconds = read_checkpoint_file(path).get("callbacks", {}).get("Timer", {}).get("time_elapsed", {}).get("train")
    except (SekdError, AttributeError):
        return None
    return float(seconds) if isinstance(seconds, (int, float)) else None


def choose_resume_checkpoint(ckpt_dir: Path) -> Path | None:
    """The checkpoint to resume from: ``last.ckpt``, or when it is damaged the newest one that loads.

    Also removes the temporary files a killed save left behind.
    """
    for stale in remove_stale_temps(ckpt_dir):
        log.info("removed %s, left by an interrupted save", stale)
    last = ckpt_dir / "last.ckpt"
    if last.is_file() and checkpoint_step(last) is not None:
        return last
    others = sorted((p for p in ckpt_dir.glob("*.ckpt") if p != last), key=lambda p: p.stat().st_mtime, reverse=True)
    for candidate in others:
        if checkpoint_step(candidate) is not None:
            if last.exists():
                log.warning("warning: %s does not load; resuming from %s instead", last, candidate)
            return candidate
    if last.exists():
        log.warning("warning: %s does not load and no other checkpoint of the run does; starting afresh", last)
    return None


class StopWhenFlat(L.Callback):
    """End training once validation PESQ-WB has not improved for a ``fraction`` of the steps so far.

    At a validation at step s the run stops when its best score is from step (1 − fraction)·s or
    earlier and at least three validations have come since (fewer would stop on noise). Where the
    learning rate has not yet decayed much, that says the model has stopped learning, which a flat
    end of a decayed schedule cannot. The state travels in the checkpoint, so a stopped run started
    again stays stopped and a resumed one keeps its best step.
    """

    MIN_VALIDATIONS = 3

    def __init__(self, fraction: float, val_every: int, monitor: str = "val/pesq_wb"):
        self.fraction, self.val_every, self.monitor = fraction, val_every, monitor
        self.best_score: float | None = None
        self.best_step = 0
        self.stopped_at: int | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        if self.stopped_at is not None:  # a stopped run started again: nothing more to train
            trainer.should_stop = True

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        score, step = float(trainer.callback_metrics[self.monitor]), trainer.global_step
        if self.best_score is None or score > self.best_score:
            self.best_score, self.best_step = score, step
        flat_since = step - self.best_step
        if flat_since >= max(self.fraction * step, self.MIN_VALIDATIONS * self.val_every):
            self.stopped_at = step
            trainer.should_stop = True
            log.info("validation PESQ-WB flat for %d of %d steps (best %.3f at step %d): training stops",
                     flat_since, step, self.best_score, self.best_step)

    def state_dict(self) -> dict:
        return {"best_score": self.best_score, "best_step": self.best_step, "stopped_at": self.stopped_at}

    def load_state_dict(self, state: dict) -> None:
        self.best_score, self.best_step, self.stopped_at = state["best_score"], state["best_step"], state["stopped_at"]


class SaveOnSignal(L.Callback):
    """Turn SIGTERM and SIGINT into a clean stop: Lightning ends the step, we save ``last.ckpt``.

    SIGINT takes Lightning's SIGTERM path (a flag checked after every step, shared by all DDP
    ranks), so the saved weights are never half-updated. A second Ctrl-C interrupts at once.
    """

    def __init__(self, last: Path):
        self.last, self.signum, self.saved = last, None, None
        self._held = False  # a signal held back until the validation in progress ends
        self._previous: dict[int, Any] = {}
        self._trainer: L.Trainer | None = None

    def _handler(self, signum, frame) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        if self._trainer is not None:
            self._trainer._signal_connector.received_sigterm = True

    def install(self) -> None:
        """Before ``fit``: Lightning adds its own SIGTERM handler to ours."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._handler)

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def setup(self, trainer, pl_module, stage) -> None:
        self._trainer = trainer

    def on_validation_batch_end(self, trainer, *args) -> None:
        # Lightning stops a validation at the next batch after a signal, and the resumed run never
        # redoes it (at the last step, it ends at once): those weights would never be scored or
        # kept as best. So the signal waits for the validation's end (a few seconds).
        if trainer.received_sigterm and trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            trainer._signal_connector.received_sigterm, self._held = False, True

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._held:  # Lightning now stops after this step, as for a signal during the step
            trainer._signal_connector.received_sigterm, self._held = True, False

    def on_exception(self, trainer, pl_module, exception) -> None:
        if isinstance(exception, SIGTERMException):
            self.signum = self.signum or signal.SIGTERM
            # Stopped just after a validation: the checkpoint callback saved last.ckpt as it ended, which is
            # the state Lightning resumes after a validation from; saved again now, the resumed run would log
            # every later step one step late.
            if getattr(trainer.checkpoint_callback, "_last_global_step_saved", None) != trainer.global_step:
                trainer.save_checkpoint(self.last, weights_only=False)
            self.saved = self.last


class _MetricsWriter(ExperimentWriter):
    """``metrics.csv`` that a refused write (disk full) leaves as it was: new rows are appended in
    one piece or not at all (``audio.append_whole``), and a new column rewrites the file atomically."""

    def __init__(self, log_dir: str, append: bool) -> None:
        self._append = append
        super().__init__(log_dir)
        if append and self._fs.isfile(self.metrics_file_path):  # keep the columns of the rows already there
            with self._fs.open(self.metrics_file_path, "r", newline="") as fh:
                self.metrics_keys = sorted(k for k in fh.readline().strip().split(",") if k)

    def _check_log_dir_exists(self) -> None:
        if not self._append:  # Lightning deletes metrics.csv here; a resumed run appends to it instead
            super()._check_log_dir_exists()

    def save(self) -> None:
        if not self.metrics:
            return
        path = Path(self.metrics_file_path)
        if self._record_new_keys() and path.is_file():
            self._rewrite_with_new_header(self.metrics_keys)
        rows = io.StringIO()
        writer = csv.DictWriter(rows, fieldnames=self.metrics_keys)
        if not path.is_file():
            writer.writeheader()
        writer.writerows(self.metrics)
        append_whole(path, rows.getvalue().encode())
        self.metrics = []

    def log_hparams(self, params: dict[str, Any]) -> None:
        self.hparams.update(params)
        atomic_write_text(os.path.join(self.log_dir, self.NAME_HPARAMS_FILE), yaml.safe_dump(self.hparams))

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        path = Path(self.metrics_file_path)
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(path, text.getvalue())


class MetricsCSVLogger(CSVLogger):
    """Lightning's CSV logger with :class:`_MetricsWriter`; ``append``: a resumed run adds to
    ``metrics.csv`` instead of starting it over."""

    def __init__(self, *args, append: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._append = append

    @property
    @rank_zero_experiment
    def experiment(self) -> _ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _MetricsWriter(log_dir=self.log_dir, append=self._append)
        return self._experiment


def write_failure(exc: BaseException, where: str | os.PathLike) -> WriteFailed | None:
    """The first refused write behind ``exc`` as a :class:`WriteFailed` naming its file (``where`` when the
    error names none), or None. Lightning's loggers and teardown may fail again after it and wrap it; a
    run that ends with one of :data:`~sekd.errors.WRITE_ERRNOS` ran out of room, whatever wrapped it."""
    chain = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ if exc.__cause__ is not None or exc.__suppress_context__ else exc.__context__
    for failure in reversed(chain):  # earliest first
        if isinstance(failure, WriteFailed):
            return failure
        if isinstance(failure, OSError) and failure.errno in WRITE_ERRNOS:
            return WriteFailed.of(failure.filename or where, failure)
    return None


@contextmanager
def _named_write_failures(where) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        failure = write_failure(exc, where())
        if failure is None:
            raise
        raise failure from None


class EventsLogger(TensorBoardLogger):
    """Lightning's TensorBoard logger, whose refused writes name the events file (or ``hparams.yaml``).

    TensorBoard writes events from a thread of its own; when that write fails, the thread ends
    without a traceback on the terminal (:func:`_quiet_event_writer_threads`) and the next call
    from training raises its error, here named.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _quiet_event_writer_threads()

    def _events_file(self) -> str:
        writer = getattr(getattr(self._experiment, "file_writer", None), "event_writer", None)
        return getattr(writer, "_file_name", None) or self.log_dir

    def log_metrics(self, *args, **kwargs) -> None:
        with _named_write_failures(self._events_file):
            super().log_metrics(*args, **kwargs)

    def log_hyperparams(self, *args, **kwargs) -> None:
        with _named_write_failures(self._events_file):
            super().log_hyperparams(*args, **kwargs)

    def save(self) -> None:
        with _named_write_failures(lambda: os.path.join(self.log_dir, self.NAME_HPARAMS_FILE)):
            super().save()

    def finalize(self, status: str) -> None:
        with _named_write_failures(self._events_file):
            super().finalize(status)


def _quiet_event_writer_threads() -> None:
    """Let TensorBoard's writer thread die of a refused write without printing a traceback: the
    error is raised again in the training's thread, which ends the run with one line."""
    try:
        from tensorboard.summary.writer.event_file_writer import _AsyncWriterThread
    except ImportError:
        return
    previous = threading.excepthook
    if getattr(previous, "quiet_event_writers", False):
        return

    def hook(args) -> None:
        if not (isinstance(args.thread, _AsyncWriterThread) and isinstance(args.exc_value, OSError)
                and args.exc_value.errno in WRITE_ERRNOS):
            previous(args)

    hook.quiet_event_writers = True
    threading.excepthook = hook
