"""Worker processes that never outlive the process that started them.

A pool's workers wait on a queue; when their parent is killed with SIGKILL (no clean-up runs)
they would wait on it forever, each holding its memory. Every worker of ours runs
:func:`die_with_parent` first: a daemon thread that ends the worker once its parent is gone
(it is then re-parented, so ``os.getppid()`` changes). Light on purpose: spawned workers
import this module, and must not pay for torch.
"""

from __future__ import annotations

import os
import threading
import time

POLL_SECONDS = 0.5


def die_with_parent(parent_pid: int) -> None:
    """Pool initializer: exit this process as soon as ``parent_pid`` is no longer its parent."""
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(POLL_SECONDS)
        os._exit(1)  # the parent is gone: nobody reads our results

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()
