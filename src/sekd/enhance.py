"""Enhancement of arrays and files.

``enhance_array`` is the pure part (audio in, audio out, bounded memory through
overlapping chunks); ``enhance_files`` adds reading any sample rate, writing atomically,
and per-file error reporting, so one bad file never stops the others.

L3DAS23 inputs: files ``<id>_A.<ext>`` and ``<id>_B.<ext>`` side by side are one clip
``<id>`` (mic B's channels follow mic A's when the model takes them). The format
``l3das23-submission`` writes the challenge's submission files: ``<id>.npy``, mono
float32 of the input's length.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .audio import SAMPLE_RATE, resample, write_audio
from .data.datasets import AUDIO_SUFFIXES, read_channels
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


FORMATS = ("wav", "l3das23-submission")


def _check_format(format: str) -> None:
    if format not in FORMATS:
        raise SekdError(f"unknown output format {format!r}; choose one of: {', '.join(FORMATS)}")


def _mic_pairs(files: list[tuple[Path, Path]]) -> list[tuple[tuple[Path, ...], Path]]:
    """Join ``<id>_A`` and ``<id>_B`` of one folder into the clip ``<id>``; other files stay alone."""
    paths = {p for p, _ in files}
    found = []
    for path, rel in files:
        partner = path.with_name(path.name[:-len(f"_A{path.suffix}")] + f"_B{path.suffix}")
        if path.stem.endswith("_A") and partner in paths:
            found.append(((path, partner), rel.with_name(path.stem[:-2] + path.suffix)))
        elif not (path.stem.endswith("_B") and path.with_name(path.name[:-len(f"_B{path.suffix}")]
                                                              + f"_A{path.suffix}") in paths):
            found.append(((path,), rel))
    return found


def collect_inputs(inputs: list[str | Path]) -> list[tuple[tuple[Path, ...], Path]]:
    """(files of one clip, name relative to the output folder) for every input file or audio file
    under an input folder; L3DAS23 mic files ``<id>_A``/``<id>_B`` are one clip ``<id>``."""
    found = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += [(p, p.relative_to(item)) for p in sorted(item.rglob("*"))
                      if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES]
        else:
            found.append((item, Path(item.name)))  # missing files are reported when read
    return _mic_pairs(found)


def _write_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` atomically (temporary file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npy")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def enhance_file(model: SpeechEnhancer, src: Path | tuple[Path, ...], dst: Path, format: str = "wav",
                 **chunking) -> None:
    """Enhance one clip (a file, or the files of its microphones) at any sample rate.

    The output keeps the input's rate and length, written atomically: ``dst`` as a WAV
    file, or with ``format="l3das23-submission"`` as ``<dst>.npy`` (mono float32).
    """
    _check_format(format)
    audio, sr = read_channels((src,) if isinstance(src, Path) else src, model.in_channels, sample_rate=None)
    enhanced = resample(enhance_array(model, resample(audio, sr, SAMPLE_RATE), **chunking)[None], SAMPLE_RATE, sr)
    enhanced = np.pad(enhanced[0], (0, max(0, audio.shape[1] - enhanced.shape[1])))[:audio.shape[1]]
    if format == "wav":
        write_audio(dst.with_suffix(".wav"), enhanced, sr)
    else:
        _write_npy(dst.with_suffix(".npy"), enhanced.astype(np.float32))


def enhance_files(model: SpeechEnhancer, inputs: list[str | Path], out_dir: str | Path,
                  progress: bool = True, format: str = "wav", **chunking) -> list[str]:
    """Enhance every input into ``out_dir`` (see :func:`enhance_file`); returns one error line per file that failed."""
    _check_format(format)
    out_dir = Path(out_dir)
    errors = []
    items = collect_inputs(inputs)
    for src, rel in tqdm(items, desc="enhance", unit="file", disable=not progress or len(items) < 2):
        try:
            enhance_file(model, src, out_dir / rel, format=format, **chunking)
        except SekdError as exc:
            errors.append(str(exc))
            print(f"error: {exc}", file=sys.stderr)
    return errors
