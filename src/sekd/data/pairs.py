"""Pairs: one (noisy, clean) example of a corpus, and reading it.

The bottom of the data package: layouts.py lists corpora as :class:`Pair` s, checks.py
checks them, datasets.py serves them; this module imports none of those.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE, read_audio
from ..errors import SekdError


@dataclass(frozen=True)
class Pair:
    id: str
    noisy: Path
    clean: Path
    more_noisy: tuple[Path, ...] = ()  # further microphones (L3DAS23's mic B), read when the model takes them


def read_channels(paths: list[Path] | tuple[Path, ...], in_channels: int,
                  sample_rate: int | None = SAMPLE_RATE) -> tuple[np.ndarray, int]:
    """``[in_channels, N]`` from the channels of ``paths[0]``, then of the next files as long as
    the model takes more (L3DAS23: mic A alone gives 4 channels, A and B give 8).

    At ``sample_rate`` (None: the first file's rate, the others resampled to it); files
    of different lengths are cut to the shortest. Raises SekdError naming the first file
    when the channels do not add up to ``in_channels``.
    """
    first, rate = read_audio(paths[0], sample_rate)
    parts = [first]
    for path in paths[1:]:
        if sum(p.shape[0] for p in parts) >= in_channels:
            break
        parts.append(read_audio(path, rate)[0])
    channels = sum(p.shape[0] for p in parts)
    if channels != in_channels:
        more = f" ({channels} with {', '.join(map(str, paths[1:]))})" if len(parts) > 1 else ""
        raise SekdError(f"{paths[0]}: has {first.shape[0]} channel(s){more} but the model takes {in_channels}")
    n = min(p.shape[1] for p in parts)
    return np.concatenate([p[:, :n] for p in parts]), rate


def read_noisy(pair: Pair, in_channels: int) -> np.ndarray:
    """The model's input ``[in_channels, N]`` at 16 kHz from ``pair.noisy`` and ``pair.more_noisy``."""
    return read_channels((pair.noisy, *pair.more_noisy), in_channels)[0]


def load_pair(pair: Pair, in_channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy ``[M, N]`` (:func:`read_noisy`) and clean ``[N]`` at 16 kHz."""
    noisy = read_noisy(pair, in_channels)
    clean, _ = read_audio(pair.clean, SAMPLE_RATE)
    if clean.shape[0] != 1:
        raise SekdError(f"{pair.clean}: the clean target must be mono, got {clean.shape[0]} channels")
    n = min(noisy.shape[1], clean.shape[1])
    return noisy[:, :n], clean[0, :n]
