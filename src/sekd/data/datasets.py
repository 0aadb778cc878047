"""Datasets: which (noisy, clean) pairs a data argument names, and torch datasets over them.

A data argument is one of
- a built corpus folder (holds ``manifest.csv``; rows are filtered by split),
- a manifest CSV itself (paths relative to its folder),
- a paired folder with ``noisy/`` and ``clean/`` holding files of the same names
  (VoiceBank-DEMAND and the DNS test sets look like this), or such a folder under
  ``<data>/<split>/``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..audio import SAMPLE_RATE, read_audio
from ..errors import SekdError

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg"}


@dataclass(frozen=True)
class Pair:
    id: str
    noisy: Path
    clean: Path


def _pairs_from_manifest(manifest: Path, split: str | None) -> list[Pair]:
    root = manifest.parent
    try:
        with open(manifest, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SekdError(f"{manifest}: cannot read manifest ({exc})") from None
    if rows and not {"id", "noisy", "clean"} <= set(rows[0]):
        raise SekdError(f"{manifest}: a manifest needs the columns id, noisy, clean (got {', '.join(rows[0])})")
    if split is not None and rows and "split" in rows[0]:
        rows = [r for r in rows if r["split"] == split]
    if not rows:
        raise SekdError(f"{manifest}: no mixtures" + (f" in split {split!r}" if split else ""))
    return [Pair(r["id"], root / r["noisy"], root / r["clean"]) for r in rows]


def _audio_files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*"))
            if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()}


def _pairs_from_folders(folder: Path) -> list[Pair]:
    noisy, clean = _audio_files(folder / "noisy"), _audio_files(folder / "clean")
    if not noisy:
        raise SekdError(f"{folder / 'noisy'}: no audio files")
    missing = sorted(set(noisy) - set(clean))
    if missing:
        raise SekdError(f"{folder / 'noisy' / missing[0]}: no matching clean file {folder / 'clean' / missing[0]}"
                        + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return [Pair(Path(name).with_suffix("").as_posix(), noisy[name], clean[name]) for name in noisy]


def list_pairs(data: str | Path, split: str | None = "test") -> list[Pair]:
    """The (noisy, clean) pairs that ``data`` names; see the module docstring."""
    data = Path(data)
    if data.is_file():
        return _pairs_from_manifest(data, split)
    if (data / "manifest.csv").is_file():
        return _pairs_from_manifest(data / "manifest.csv", split)
    if (data / "noisy").is_dir():
        return _pairs_from_folders(data)
    if split and (data / split / "noisy").is_dir():
        return _pairs_from_folders(data / split)
    if not data.exists():
        raise SekdError(f"{data}: no such file or folder")
    raise SekdError(f"{data}: not a corpus (no manifest.csv) and not a paired folder (no noisy/ and clean/)")


def load_pair(pair: Pair, in_channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy ``[M, N]`` and clean ``[N]`` at 16 kHz, checked against the model's channel count."""
    noisy, _ = read_audio(pair.noisy, SAMPLE_RATE)
    clean, _ = read_audio(pair.clean, SAMPLE_RATE)
    if noisy.shape[0] != in_channels:
        raise SekdError(f"{pair.noisy}: has {noisy.shape[0]} channel(s) but the model takes {in_channels}")
    if clean.shape[0] != 1:
        raise SekdError(f"{pair.clean}: the clean target must be mono, got {clean.shape[0]} channels")
    n = min(noisy.shape[1], clean.shape[1])
    return noisy[:, :n], clean[0, :n]


class CropDataset(Dataset):
    """Random fixed-length crops for training; shorter files are zero-padded at the end."""

    def __init__(self, pairs: list[Pair], crop_samples: int, in_channels: int = 1):
        if not pairs:
            raise SekdError("training data is empty")
        self.pairs, self.crop, self.in_channels = pairs, crop_samples, in_channels

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, idx: int):
        noisy, clean = load_pair(self.pairs[idx], self.in_channels)
        n = noisy.shape[1]
        if n >= self.crop:
            start = int(torch.randint(0, n - self.crop + 1, ()).item())
            noisy, clean = noisy[:, start:start + self.crop], clean[start:start + self.crop]
        else:
            noisy = np.pad(noisy, ((0, 0), (0, self.crop - n)))
            clean = np.pad(clean, (0, self.crop - n))
        return torch.from_numpy(noisy), torch.from_numpy(clean)


class WholeFileDataset(Dataset):
    """Whole files (batch size 1) for validation and evaluation."""

    def __init__(self, pairs: list[Pair], in_channels: int = 1):
        self.pairs, self.in_channels = pairs, in_channels

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, idx: int):
        noisy, clean = load_pair(self.pairs[idx], self.in_channels)
        return torch.from_numpy(noisy), torch.from_numpy(clean)
