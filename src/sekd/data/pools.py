"""Pools for on-the-fly mixing: the files of each pool (clean, noise, rir) with their headers.

Next to pairs.py at the bottom of the data package: layouts.py finds pools
(:func:`sekd.data.layouts.scan_pools`), checks.py checks their files, mixing.py mixes
from them; this module imports none of those.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..audio import SAMPLE_RATE

POOL_NAMES = ("clean", "noise", "rir")


@dataclass(frozen=True)
class PoolFile:
    path: Path
    rate: int
    channels: int
    frames: int

    @property
    def samples(self) -> int:
        """The length at 16 kHz."""
        return self.frames * SAMPLE_RATE // self.rate

    @property
    def seconds(self) -> float:
        return self.frames / self.rate


@dataclass
class Pools:
    """The audio files of each pool (``clean``, ``noise``, ``rir``: sorted, headers read) of one folder."""

    layout: str
    root: Path
    folders: dict[str, Path]                  # pool -> the folder its files come from
    files: dict[str, list[PoolFile]]
    problems: list[str] = field(default_factory=list)  # files found listing that cannot be used, one line each

    def seconds(self, pool: str) -> float:
        return sum(f.seconds for f in self.files.get(pool, []))

    def without(self, bad: set[Path]) -> Pools:
        """These pools less the files in ``bad``."""
        return Pools(self.layout, self.root, self.folders,
                     {pool: [f for f in files if f.path not in bad] for pool, files in self.files.items()})
