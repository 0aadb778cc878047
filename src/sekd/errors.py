"""User-facing errors and the command's exit codes.

Everything that is the user's input being wrong (a missing file, a bad config key, a
checkpoint that does not fit, a file that would run code) raises :class:`SekdError`. The CLI
prints its message on one line and exits with the error's ``exit_code`` instead of showing a
traceback. Exit codes, the same for every command:

- 0: done;
- 1: some inputs failed (each named on its own line), the others were processed; or a file
  could not be written (:class:`WriteFailed`: disk full, no permission, read-only), named on
  one line with the reason, the earlier version of that file left as it was;
- 2: bad usage or bad data (nothing, or nothing more, was done);
- 130 / 143: stopped by SIGINT (Ctrl-C) / SIGTERM; training saved ``last.ckpt`` first;
- anything else: a crash (a bug: please report the traceback).
"""

import errno

EXIT_OK, EXIT_SOME_INPUTS_FAILED, EXIT_BAD_INPUT = 0, 1, 2
# System errors that only a write gives (no room, a file-size limit, a read-only file system)
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


class SekdError(Exception):
    """An error caused by user input; the message names the file or key and the problem."""

    exit_code = EXIT_BAD_INPUT


class WriteFailed(SekdError):
    """A file sekd writes could not be written: ``"<file>: cannot write: <reason>"`` (exit 1).

    The reason is the system's (No space left on device, Permission denied, Read-only file
    system); what was there before is left as it was (``audio.atomic_write``).
    """

    exit_code = EXIT_SOME_INPUTS_FAILED

    @classmethod
    def of(cls, path, exc: OSError) -> "WriteFailed":
        return cls(f"{path}: cannot write: {exc.strerror or exc}")
