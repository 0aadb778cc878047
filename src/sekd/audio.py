"""Audio file I/O: reading with clear errors, resampling, and atomic writing.

All audio inside sekd is float32, shape ``[channels, samples]``, at 16 kHz unless a
function says otherwise.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .errors import SekdError

SAMPLE_RATE = 16000


def read_audio(path: str | os.PathLike, sample_rate: int | None = SAMPLE_RATE) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 ``[channels, samples]``.

    Resamples to ``sample_rate`` when given (``None`` keeps the file's rate). Raises
    :class:`SekdError` naming the file when it is missing, unreadable or empty.
    """
    path = Path(path)
    if not path.is_file():
        raise SekdError(f"{path}: no such file")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types; all mean "not audio we can read"
        raise SekdError(f"{path}: cannot read audio ({exc})") from None
    if data.shape[0] == 0:
        raise SekdError(f"{path}: the file holds no samples")
    data = np.ascontiguousarray(data.T)  # (C, N)
    if not np.all(np.isfinite(data)):
        raise SekdError(f"{path}: the audio contains NaN or infinite samples")
    if sample_rate is not None and sr != sample_rate:
        data = resample(data, sr, sample_rate)
        sr = sample_rate
    return data, sr


def resample(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample ``[channels, samples]`` float audio with soxr (high quality)."""
    if sr_in == sr_out:
        return audio
    out = soxr.resample(np.ascontiguousarray(audio.T), sr_in, sr_out, quality="HQ")
    return np.ascontiguousarray(np.atleast_2d(out.T)).astype(np.float32)


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = SAMPLE_RATE,
                subtype: str = "PCM_16") -> None:
    """Write ``[channels, samples]`` (or ``[samples]``) audio atomically.

    The data goes to a temporary file in the same folder, which is then renamed over the
    target, so an interrupted run never leaves a half-written file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    if subtype.startswith("PCM"):
        audio = np.clip(audio, -1.0, 1.0)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix or ".wav")
    os.close(fd)
    try:
        sf.write(tmp, audio.T, sample_rate, subtype=subtype, format="WAV")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically (temporary file in the same folder, then rename)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a binary file atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
