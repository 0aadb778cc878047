"""User-facing errors.

Everything that is the user's input being wrong (a missing file, a bad config key, a
checkpoint that does not fit) raises :class:`SekdError`. The CLI prints its message on one
line and exits non-zero instead of showing a traceback.
"""


class SekdError(Exception):
    """An error caused by user input; the message names the file or key and the problem."""
