"""Entry point of the DDP test: ``python -m ddp_entry ARGS`` runs ``sekd ARGS``.

Lightning's DDP launcher starts the other ranks with the same ``python -m`` command, so
every rank gets this wrapper: with ``KILL_AT`` set, the rank ``KILL_RANK`` (default 1)
kills itself with SIGKILL when about to train that global step, as a crashed node would.
"""

import os
import signal
import sys

from sekd.cli import main
from sekd.engine.module import EnhancementModule

_step = EnhancementModule.training_step


def training_step(self, batch, batch_idx):
    if ("KILL_AT" in os.environ and self.global_rank == int(os.environ.get("KILL_RANK", "1"))
            and self.global_step == int(os.environ["KILL_AT"])):
        os.kill(os.getpid(), signal.SIGKILL)
    return _step(self, batch, batch_idx)


EnhancementModule.training_step = training_step

if __name__ == "__main__":
    sys.exit(main())
