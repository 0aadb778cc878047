"""Enhancement of arrays and files.

``enhance_array`` is the pure part (audio in, audio out, bounded memory through
overlapping chunks); ``enhance_files`` adds reading any sample rate, writing atomically,
and per-file error reporting, so one bad file never stops the others.

A recording with more channels than a one-channel model takes (a stereo file) has each
channel enhanced on its own and keeps its channels (``downmix=True``: mixed to mono first,
one output channel); see :func:`model_inputs`. For a model of several microphones the
channels are its microphones and must match.

L3DAS23 inputs: files ``<id>_A.<ext>`` and ``<id>_B.<ext>`` side by side are one clip
``<id>`` (mic B's channels follow mic A's when the model takes them). The format
``l3das23-submission`` writes the challenge's submission files: ``<id>.npy``, mono
float32 of the input's length.
"""

from __future__ import annotations

import io
import logging
import os
import sys
from pathlib import Path

import numpy as np
import torch

from .audio import (AUDIO_SUFFIXES, SAMPLE_RATE, atomic_write_bytes, output_subtype, read_audio, remove_stale_temps,
                    resample, wav_truncation, write_audio)
from .data.datasets import read_channels
from .device import model_device
from .errors import SekdError, WriteFailed
from .models import SpeechEnhancer
from .progress import progress_bar

log = logging.getLogger("sekd")


@torch.inference_mode()
def _enhance_chunk(model: SpeechEnhancer, audio: torch.Tensor) -> np.ndarray:
    """One forward pass over ``[M, n]``; pads files shorter than one STFT window."""
    n = audio.shape[-1]
    if n < model.signal.n_fft:
        audio = torch.nn.functional.pad(audio, (0, model.signal.n_fft - n))
    return model(audio[None].to(model_device(model)))[0, :n].float().cpu().numpy()


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


def model_inputs(audio: np.ndarray, in_channels: int, where: str | Path, downmix: bool = False) -> list[np.ndarray]:
    """The model inputs ``[in_channels, N]`` a recording ``[C, N]`` makes; their outputs, stacked, are
    the enhanced recording's channels.

    A recording of the model's channel count is one input. For a model that takes one
    channel, a multi-channel recording gives one input per channel (its channels kept), or
    with ``downmix`` their mean (mono). A model of several microphones takes exactly its
    channels: anything else is a SekdError naming ``where``.
    """
    channels = audio.shape[0]
    if in_channels == 1 and channels > 1:
        return [audio.mean(axis=0, keepdims=True)] if downmix else [channel[None] for channel in audio]
    if channels != in_channels:
        raise SekdError(f"{where}: has {channels} channel(s) but the model takes {in_channels}")
    return [audio]


def check_downmix(in_channels: int, downmix: bool) -> None:
    if downmix and in_channels != 1:
        raise SekdError(f"--downmix: the model takes {in_channels} channels (microphones), not a mono mix")


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


def collect_inputs(inputs: list[str | Path], out_dir: str | Path | None = None) -> list[tuple[tuple[Path, ...], Path]]:
    """(files of one clip, name relative to the output folder) for every input file or audio file
    under an input folder; L3DAS23 mic files ``<id>_A``/``<id>_B`` are one clip ``<id>``.

    Names are relative to the deepest folder holding all inputs (a single folder: the folder
    itself), so files of equal names in different folders keep apart. ``out_dir`` is never
    scanned (an output folder inside an input folder holds earlier outputs). Files that no
    libsndfile format names are skipped, each with a log line.
    """
    out = Path(out_dir).resolve() if out_dir is not None else None
    found = []
    for item in map(Path, inputs):
        if item.is_dir():
            for p in sorted(item.rglob("*")):
                if not p.is_file() or (out is not None and p.resolve().is_relative_to(out)):
                    continue
                if p.suffix.lower() in AUDIO_SUFFIXES:
                    found.append(p)
                else:
                    log.info("skipped %s: not a name of an audio format libsndfile reads", p)
        else:
            found.append(item)  # missing files are reported when read
    if not found:
        return []
    roots = [Path(i).resolve() if Path(i).is_dir() else Path(i).resolve().parent for i in inputs]
    common = Path(os.path.commonpath(roots))
    return _mic_pairs([(p, p.resolve().relative_to(common)) for p in found])


def plan_outputs(inputs: list[str | Path], out_dir: str | Path, suffix: str) -> list[tuple[tuple[Path, ...], Path]]:
    """(files of one clip, output file) for every clip; refuses what would overwrite an input or another output.

    Raises SekdError, before anything is written, when ``out_dir`` is an input folder or an
    existing file, or when two inputs (``x.flac`` and ``x.ogg``) or an input and its own
    output would share a name.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SekdError(f"-o {out}: an existing file, not a folder")
    for item in map(Path, inputs):
        if item.is_dir() and item.resolve() == out.resolve():
            raise SekdError(f"-o {out}: the output folder is the input folder {item}; its files would be overwritten")
    plan, taken = [], {}
    inputs_resolved = set()
    for src, rel in collect_inputs(inputs, out):
        inputs_resolved.update(p.resolve() for p in src)
        dst = out / rel.with_suffix(suffix)
        if dst in taken:
            raise SekdError(f"{src[0]} and {taken[dst][0]} would both be written to {dst}; "
                            "enhance them into different output folders")
        taken[dst] = src
        plan.append((src, dst))
    for src, dst in plan:
        if dst.resolve() in inputs_resolved:
            raise SekdError(f"-o {out}: {dst} would overwrite the input {dst}; choose another output folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SekdError(f"-o {out}: cannot create the output folder ({exc.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise SekdError(f"-o {out}: the output folder is not writable")
    return plan


def _write_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` atomically (see ``audio.atomic_write``); in memory first, since numpy reports a full disk
    without its reason."""
    encoded = io.BytesIO()
    np.save(encoded, array)
    atomic_write_bytes(path, encoded.getbuffer())


def enhance_file(model: SpeechEnhancer, src: Path | tuple[Path, ...], dst: Path, format: str = "wav",
                 downmix: bool = False, **chunking) -> None:
    """Enhance one clip (a file, or the files of its microphones) at any sample rate.

    The output keeps the input's rate and length, written atomically: ``dst`` as a WAV
    file in the input's subtype where WAV holds it (float stays float, 24-bit stays 24-bit;
    see ``audio.output_subtype``), or with ``format="l3das23-submission"`` as ``<dst>.npy``
    (mono float32). A WAV input whose data chunk was cut short is enhanced with a warning.
    A one-channel model keeps a multi-channel file's channels, each enhanced on its own, or
    mixes them to mono first with ``downmix`` (:func:`model_inputs`).
    """
    _check_format(format)
    files = (src,) if isinstance(src, Path) else src
    for path in files:
        if note := wav_truncation(path):
            log.warning("warning: %s", note)
    if len(files) == 1:
        audio, sr = read_audio(files[0], None)
    else:  # the microphones of an L3DAS23 clip: as many channels as the model takes
        audio, sr = read_channels(files, model.in_channels, sample_rate=None)
    inputs = model_inputs(audio, model.in_channels, files[0], downmix)
    if format != "wav" and len(inputs) > 1:
        raise SekdError(f"{files[0]}: has {audio.shape[0]} channels and the submission format is mono; "
                        "use --downmix or a model that takes them")
    enhanced = np.stack([enhance_array(model, resample(x, sr, SAMPLE_RATE), **chunking) for x in inputs])
    enhanced = resample(enhanced, SAMPLE_RATE, sr)
    enhanced = np.pad(enhanced, ((0, 0), (0, max(0, audio.shape[1] - enhanced.shape[1]))))[:, :audio.shape[1]]
    if format == "wav":
        write_audio(dst.with_suffix(".wav"), enhanced, sr, subtype=output_subtype(files[0]))
    else:
        _write_npy(dst.with_suffix(".npy"), enhanced[0].astype(np.float32))


def enhance_files(model: SpeechEnhancer, inputs: list[str | Path], out_dir: str | Path,
                  progress: bool = True, format: str = "wav", downmix: bool = False, **chunking) -> list[str]:
    """Enhance every input into ``out_dir`` (see :func:`enhance_file`); returns one error line per file that failed.

    Input folders keep their structure under ``out_dir``; what would overwrite an input or
    another output is refused before anything is written (:func:`plan_outputs`). An output the
    system refuses to write (a full disk) stops it: :class:`~sekd.errors.WriteFailed` naming the
    file, the outputs written before kept.
    """
    _check_format(format)
    check_downmix(model.in_channels, downmix)
    errors = []
    items = plan_outputs(inputs, out_dir, ".wav" if format == "wav" else ".npy")
    for folder in {dst.parent for _, dst in items}:
        remove_stale_temps(folder)
    for src, dst in progress_bar(items, desc="enhance", unit="file", disable=not progress or len(items) < 2):
        try:
            enhance_file(model, src, dst, format=format, downmix=downmix, **chunking)
        except WriteFailed:
            raise  # the output side (a full disk, a read-only folder): the next files would fail the same way
        except SekdError as exc:
            errors.append(str(exc))
        except OSError as exc:  # the output side: a full disk, a folder made read-only meanwhile
            errors.append(f"{dst}: cannot write ({exc.strerror or exc})")
        else:
            continue
        print(f"error: {errors[-1]}", file=sys.stderr)
    return errors
