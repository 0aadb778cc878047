"""Audio file I/O: reading with clear errors, resampling, and atomic writing.

All audio inside sekd is float32, shape ``[channels, samples]``, at 16 kHz unless a
function says otherwise.
"""

from __future__ import annotations

import io
import logging
import os
import re
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .errors import SekdError, WriteFailed

SAMPLE_RATE = 16000

log = logging.getLogger("sekd")

# File name endings of the formats libsndfile reads (soundfile.available_formats(), MP3 included).
AUDIO_SUFFIXES = frozenset({".wav", ".wave", ".bwf", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff",
                            ".aifc", ".au", ".snd", ".caf", ".w64", ".rf64", ".nist", ".sph", ".voc", ".htk",
                            ".sf", ".ircam", ".mat", ".paf", ".svx", ".xi", ".sd2", ".avr", ".wve", ".pvf", ".sds"})
# WAV subtypes an enhanced file keeps from its input; others (lossy, 8-bit, μ-law) become PCM_16.
KEPT_SUBTYPES = ("PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE")


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


def output_subtype(path: str | os.PathLike) -> str:
    """The WAV subtype that keeps ``path``'s resolution: its own when WAV holds it, else PCM_16."""
    try:
        subtype = sf.info(str(path)).subtype
    except Exception:
        return "PCM_16"
    return subtype if subtype in KEPT_SUBTYPES else "PCM_16"


def wav_truncation(path: str | os.PathLike) -> str | None:
    """For a RIFF WAV file whose data chunk declares more bytes than the file holds: a note saying so.

    libsndfile reads such a file up to its end without a word; the missing part was lost
    when the file was cut (a copy or a recording that stopped).
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            size = os.fstat(fh.fileno()).st_size
            while True:
                chunk = fh.read(8)
                if len(chunk) < 8:
                    return None
                length = int.from_bytes(chunk[4:], "little")
                if chunk[:4] == b"data":
                    available = size - fh.tell()
                    if 0 < length < 0xFFFFFFFF and length > available:  # 0 and ~0: size left open by a streaming writer
                        return (f"{path}: the data chunk declares {length} bytes but the file holds {available}: "
                                f"truncated; using the {available} bytes there")
                    return None
                fh.seek(length + (length & 1), os.SEEK_CUR)
    except OSError:
        return None


def resample(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample ``[channels, samples]`` float audio with soxr (high quality)."""
    if sr_in == sr_out:
        return audio
    out = soxr.resample(np.ascontiguousarray(audio.T), sr_in, sr_out, quality="HQ")
    return np.ascontiguousarray(np.atleast_2d(out.T)).astype(np.float32)


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = SAMPLE_RATE,
                subtype: str = "PCM_16") -> None:
    """Write ``[channels, samples]`` (or ``[samples]``) audio atomically (see :func:`atomic_write`).

    Integer subtypes cannot hold samples beyond ±1: loud audio is scaled down to full scale
    as a whole, with a warning naming the file, never clipped silently. Float subtypes
    keep every value.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    if subtype.startswith("PCM"):
        peak = float(np.abs(audio).max()) if audio.size else 0.0
        if peak > 1.0:
            audio = audio / peak
            log.warning("warning: %s: peak %.2f above full scale; scaled down by %.1f dB to fit %s instead of "
                        "clipping", path, peak, 20 * np.log10(peak), subtype)
    # Encoded in memory: libsndfile reports a full disk as "System error.", a plain write says why.
    encoded = io.BytesIO()
    sf.write(encoded, audio.T, sample_rate, subtype=subtype, format="WAV")
    atomic_write_bytes(path, encoded.getbuffer())


def check_output_file(path: str | os.PathLike, inputs: tuple[str | os.PathLike, ...] = ()) -> Path:
    """Refuse, before any work, an output file that is a folder, an input, or in a folder we cannot write."""
    path = Path(path)
    if path.is_dir():
        raise SekdError(f"-o {path}: a folder; give a file name")
    if any(Path(i).exists() and path.exists() and path.samefile(i) for i in inputs):
        raise SekdError(f"-o {path}: the output is the input file; it would be overwritten")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SekdError(f"-o {path}: cannot create its folder ({exc.strerror})") from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise SekdError(f"-o {path}: the folder {path.parent} is not writable")
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically (see :func:`atomic_write`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes | memoryview) -> None:
    """Write a binary file atomically (see :func:`atomic_write`).

    Writers whose library hides the system's error (libsndfile, ``torch.save``) serialise
    into memory and write through here, so that a full disk is said as such.
    """
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


TEMP_MARK = ".sekd-"  # our temporary files: .<target name>.sekd-<host>-<pid>-<random>.tmp
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.sekd-(?P<host>.+)-(?P<pid>\d+)-[^.]+\.tmp$")


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> None:
    """Make ``path`` appear complete or not at all, even after a kill or a power cut.

    ``write(tmp)`` fills a temporary file in the target's own folder (a rename across
    filesystems would be a copy that a kill can truncate); the file is flushed to disk,
    given the mode the umask allows (mkstemp's 0600 would hide it from the group), renamed
    over the target, and the folder entry is flushed too. The temporary name carries host
    and process id, so :func:`remove_stale_temps` can tell a dead writer's leftovers.

    A write the system refuses (disk full, no permission, read-only file system: an
    ``OSError`` from ``write`` or from the steps here) raises :class:`~sekd.errors.WriteFailed`
    naming ``path`` and the reason; the temporary file is removed and the earlier ``path``
    is untouched.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp",
                                   prefix=f".{path.name}{TEMP_MARK}{socket.gethostname()}-{os.getpid()}-")
    except OSError as exc:
        raise WriteFailed.of(path, exc) from None
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise WriteFailed.of(path, exc) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def append_whole(path: str | os.PathLike, data: bytes) -> None:
    """Append ``data`` to ``path`` (made when missing) entirely or not at all.

    For files that grow (a run's ``metrics.csv``): a write the system refuses midway is cut
    back to the file's earlier end, so no half line is left for the next append to join,
    and raises :class:`~sekd.errors.WriteFailed` naming ``path`` and the reason.
    """
    path = Path(path)
    try:
        with open(path, "ab", buffering=0) as fh:
            start = fh.tell()
            try:
                view = memoryview(data)
                while view:
                    view = view[fh.write(view):]
                os.fsync(fh.fileno())
            except OSError:
                os.ftruncate(fh.fileno(), start)  # shrinking needs no space
                raise
    except OSError as exc:
        raise WriteFailed.of(path, exc) from None


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot sync a folder; the rename is still atomic
    finally:
        os.close(fd)


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete temporary files that a killed sekd process of this host left in ``folder``; returns them.

    Only our own names (see :func:`atomic_write`) whose writer no longer runs; another
    host's or a live process's temporary files are left alone.
    """
    folder, host, removed = Path(folder), socket.gethostname(), []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = _TEMP_NAME.match(entry.name)
        if match and match["host"] == host and not _process_alive(int(match["pid"])) and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True
