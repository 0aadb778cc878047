"""Progress that suits where it goes: tqdm's live bar on a terminal, an occasional line in a log.

A bar redrawn many times a second is right on a terminal and wrong in a log file, where each
redraw is kept (an evaluation wrote 474 of them). When stderr is not a terminal,
:class:`ProgressLines` writes one plain line now and then instead: when the work has passed
another tenth of its total and half a minute has gone by since the last line, or five
minutes have gone by whatever the count; and one line at the end. Every progress display of
sekd goes through :func:`progress_bar` (Lightning's training bar: ``engine/progress.py``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO

LINE_MIN_SECONDS = 30.0    # no two lines closer than this, however fast the work moves
LINE_MAX_SECONDS = 300.0   # a line at least this often, however slowly
LINE_FRACTION = 0.1        # otherwise a line each time another tenth of the total is done


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default: the current stderr) is a terminal, where a live bar belongs."""
    stream = sys.stderr if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def format_duration(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on (what tqdm shows)."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressLines:
    """tqdm's interface as far as sekd uses it (iterate, ``update``, ``set_postfix_str``, ``close``, ``with``),
    writing a line now and then to ``stream`` (see the module's docstring)::

        evaluate: 240/600 (40 %), 1:52 elapsed, about 2:48 left

    ``start`` is the count already done when it begins (a resumed training run): the rate and
    the time left come from the work done since.
    """

    def __init__(self, iterable: Iterable | None = None, total: int | None = None, desc: str = "",
                 unit: str = "it", stream: TextIO | None = None, start: int = 0,
                 clock=time.monotonic) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream
        self.n = self.start = start
        self.postfix = ""
        self.clock = clock
        self.started = self.last_line_at = clock()
        self.last_line_n = start
        self.closed = False

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> ProgressLines:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def set_postfix_str(self, text: str) -> None:
        """Text added to the next lines (e.g. the training loss)."""
        self.postfix = text

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._due():
            self.write_line()

    def _due(self) -> bool:
        since = self.clock() - self.last_line_at
        if since >= LINE_MAX_SECONDS:
            return True
        if since < LINE_MIN_SECONDS:
            return False
        if not self.total:  # no total: no tenths, only the clock
            return False
        tenth = max(1, int(self.total * LINE_FRACTION))
        return self.n // tenth > self.last_line_n // tenth

    def line(self) -> str:
        elapsed = self.clock() - self.started
        parts = [f"{self.n}/{self.total} ({100 * self.n / self.total:.0f} %)" if self.total else f"{self.n} {self.unit}",
                 f"{format_duration(elapsed)} elapsed"]
        done = self.n - self.start
        if self.total and done > 0 and self.n < self.total:
            parts.append(f"about {format_duration(elapsed / done * (self.total - self.n))} left")
        if self.postfix:
            parts.append(self.postfix)
        return f"{self.desc}: " + ", ".join(parts) if self.desc else ", ".join(parts)

    def write_line(self) -> None:
        self.note(self.line())
        self.last_line_at, self.last_line_n = self.clock(), self.n

    def note(self, text: str) -> None:
        """Write another line where the progress lines go (e.g. a validation's scores)."""
        print(text, file=self.stream or sys.stderr, flush=True)

    def close(self) -> None:
        """The last line (unless nothing moved since the previous one)."""
        if self.closed:
            return
        self.closed = True
        if self.n != self.last_line_n:
            self.write_line()


class _Silent:
    """What a disabled bar is: the same interface, no output."""

    def __init__(self, iterable: Iterable | None = None) -> None:
        self.iterable = iterable

    def __iter__(self) -> Iterator:
        return iter(self.iterable)

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
                 disable: bool = False):
    """A progress display for ``iterable`` (or for ``update`` calls up to ``total``): tqdm's bar when stderr
    is a terminal, :class:`ProgressLines` when it is not, nothing when ``disable``."""
    if disable:
        return _Silent(iterable)
    if on_terminal():
        from tqdm import tqdm
        return tqdm(iterable, total=total, desc=desc, unit=unit)
    return ProgressLines(iterable, total=total, desc=desc, unit=unit)
