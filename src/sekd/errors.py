"""User-facing errors and the command's exit codes.

Everything that is the user's input being wrong (a missing file, a bad config key, a
checkpoint that does not fit, a file that would run code) raises :class:`SekdError`. The CLI
prints its message on one line and exits with the error's ``exit_code`` instead of showing a
traceback. Exit codes, the same for every command:

- 0: done;
- 1: some inputs failed (each named on its own line), the others were processed;
- 2: bad usage or bad data (nothing, or nothing more, was done);
- 130 / 143: stopped by SIGINT (Ctrl-C) / SIGTERM; training saved ``last.ckpt`` first;
- anything else: a crash (a bug: please report the traceback).
"""

EXIT_OK, EXIT_SOME_INPUTS_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class SekdError(Exception):
    """An error caused by user input; the message names the file or key and the problem."""

    exit_code = EXIT_BAD_INPUT
