"""Training progress: Lightning's live bar on a terminal, a line now and then in a log (see ``sekd.progress``)."""

from __future__ import annotations

import time

from lightning.pytorch.callbacks import Callback

from ..progress import ProgressLines, format_duration, on_terminal


class ProgressLinesCallback(Callback):
    """One line per :class:`~sekd.progress.ProgressLines` rule (step/total, time left, the training loss), and
    one after each validation with its scores, from the first process only::

        train: 240/600 (40 %), 3:10 elapsed, about 4:45 left, loss 0.0412
        validation at step 240 (0:21): pesq_wb 1.594, si_sdr 8.61, stoi 0.834
    """

    def __init__(self) -> None:
        self.lines: ProgressLines | None = None
        self.validation_started = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            self.lines = ProgressLines(total=trainer.max_steps, desc="train", start=trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.lines is None:
            return
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None:
            self.lines.set_postfix_str(f"loss {float(loss):.4f}")
        self.lines.update(trainer.global_step - self.lines.n)

    def on_validation_start(self, trainer, pl_module) -> None:
        self.validation_started = time.monotonic()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.lines is None or trainer.sanity_checking:
            return
        scores = ", ".join(f"{key[len('val/'):]} {float(value):.3f}"
                           for key, value in sorted(trainer.callback_metrics.items()) if key.startswith("val/"))
        took = format_duration(time.monotonic() - self.validation_started)
        self.lines.note(f"validation at step {trainer.global_step} ({took}): {scores}")

    def on_train_end(self, trainer, pl_module) -> None:
        if self.lines is not None:
            self.lines.close()


def progress_callbacks() -> tuple[bool, list[Callback]]:
    """``(enable_progress_bar, callbacks)`` for a Trainer: Lightning's own bar when stderr is a terminal,
    else :class:`ProgressLinesCallback` in its place."""
    return (True, []) if on_terminal() else (False, [ProgressLinesCallback()])
