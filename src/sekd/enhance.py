"""Enhancement of arrays and files.

``enhance_array`` is the pure part (audio in, audio out, bounded memory through
overlapping chunks); ``enhance_files`` adds reading any sample rate, writing atomically,
and per-file error reporting, so one bad file never stops the others.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .audio import SAMPLE_RATE, read_audio, resample, write_audio
from .data.datasets import AUDIO_SUFFIXES
from .errors import SekdError
from .models import SpeechEnhancer


@torch.inference_mode()
def _enhance_chunk(model: SpeechEnhancer, audio: torch.Tensor) -> np.ndarray:
    """One forward pass over ``[M, n]``; pads files shorter than one STFT window."""
    n = audio.shape[-1]
    if n < model.signal.n_fft:
        audio = torch.nn.functional.pad(audio, (0, model.signal.n_fft - n))
    return model(audio[None])[0, :n].numpy()


def enhance_array(model: SpeechEnhancer, audio: np.ndarray, chunk_seconds: float = 10.0,
                  overlap_seconds: float = 1.0) -> np.ndarray:
    """Enhance ``[M, N]`` float32 16 kHz audio to ``[N]``.

    Files longer than ``chunk_seconds`` are processed in chunks that overlap by
    ``overlap_seconds`` and are cross-faded, so memory stays bounded (the time-path
    attention is quadratic in the number of frames) whatever the file's length.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    n = audio.shape[-1]
    chunk = int(chunk_seconds * SAMPLE_RATE)
    overlap = min(int(overlap_seconds * SAMPLE_RATE), chunk // 2)
    x = torch.from_numpy(audio)
    if n <= chunk:
        return _enhance_chunk(model, x)
    starts = list(range(0, n - chunk, chunk - overlap)) + [n - chunk]
    fade = np.linspace(0.0, 1.0, overlap + 2, dtype=np.float32)[1:-1]
    out = np.zeros(n, dtype=np.float32)
    weight = np.zeros(n, dtype=np.float32)
    for start in starts:
        w = np.ones(chunk, dtype=np.float32)
        if start > 0:
            w[:overlap] = fade
        if start + chunk < n:
            w[-overlap:] = fade[::-1]
        out[start:start + chunk] += w * _enhance_chunk(model, x[:, start:start + chunk])
        weight[start:start + chunk] += w
    return out / weight


def collect_inputs(inputs: list[str | Path]) -> list[tuple[Path, Path]]:
    """(file, name relative to the output folder) for every input file or audio file under an input folder."""
    found = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += [(p, p.relative_to(item)) for p in sorted(item.rglob("*"))
                      if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES]
        else:
            found.append((item, Path(item.name)))  # missing files are reported when read
    return found


def enhance_file(model: SpeechEnhancer, src: Path, dst: Path, **chunking) -> None:
    """Enhance one file at any sample rate; the output keeps the input's rate, written atomically."""
    audio, sr = read_audio(src, sample_rate=None)
    if audio.shape[0] != model.in_channels:
        raise SekdError(f"{src}: has {audio.shape[0]} channel(s) but the model takes {model.in_channels}")
    enhanced = enhance_array(model, resample(audio, sr, SAMPLE_RATE), **chunking)
    write_audio(dst.with_suffix(".wav"), resample(enhanced[None], SAMPLE_RATE, sr), sr)


def enhance_files(model: SpeechEnhancer, inputs: list[str | Path], out_dir: str | Path,
                  progress: bool = True, **chunking) -> list[str]:
    """Enhance every input into ``out_dir``; returns one error line per file that failed."""
    out_dir = Path(out_dir)
    errors = []
    items = collect_inputs(inputs)
    for src, rel in tqdm(items, desc="enhance", unit="file", disable=not progress or len(items) < 2):
        try:
            enhance_file(model, src, out_dir / rel, **chunking)
        except SekdError as exc:
            errors.append(str(exc))
            print(f"error: {exc}", file=sys.stderr)
    return errors
