"""A training run's state on disk, made to survive kills, signals and strangers' files.

- :class:`AtomicCheckpointIO`: Lightning writes every checkpoint through ``audio.atomic_write``
  (temporary file beside the target, fsync, rename) and reads it with ``weights_only=True``.
- :func:`choose_resume_checkpoint`: ``last.ckpt`` when it loads, else the newest checkpoint of
  the run that does, with a warning.
- :func:`training_seconds`: the time a run has spent training, over all its resumed parts.
- :class:`SaveOnSignal`: SIGTERM and SIGINT stop training after the current step (and the
  validation that follows it, if any), save ``last.ckpt`` and end the command with 128 + the
  signal's number (143, 130).
- :class:`AppendingCSVLogger`: a resumed run adds to ``csv/metrics.csv`` instead of deleting it.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.loggers.csv_logs import _ExperimentWriter
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ..audio import remove_stale_temps
from ..checkpoint import read_checkpoint_file, save_checkpoint_file
from ..errors import SekdError

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


class _AppendingWriter(ExperimentWriter):
    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        if self._fs.isfile(self.metrics_file_path):  # keep the columns of the rows already there
            with self._fs.open(self.metrics_file_path, "r", newline="") as fh:
                self.metrics_keys = sorted(k for k in fh.readline().strip().split(",") if k)

    def _check_log_dir_exists(self) -> None:
        pass  # Lightning deletes metrics.csv here; a resumed run appends to it instead


class AppendingCSVLogger(CSVLogger):
    @property
    @rank_zero_experiment
    def experiment(self) -> _ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment
