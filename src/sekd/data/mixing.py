"""On-the-fly mixing (``data.mixing: online``): every training example mixed afresh from pools.

A *pool folder* holds clean speech, noise and (optionally) room impulse responses; layouts.py
recognises the built-in corpus's ``OUT/pools/``, a user's ``clean/``, ``noise/``, ``rir/``
folders and the DNS Challenge download as it is (:func:`sekd.data.layouts.scan_pools`), and
checks.py checks every file before training (:func:`sekd.data.checks.require_good_pools`).
Files may have any sample rate (resampled with soxr) and any length; RIRs may have several
channels (one per microphone of a multi-channel model).

One example is a pure function of its item seed, which the sampler draws from
(seed, epoch, index) (:class:`~sekd.data.datasets.EpochBatchSampler`), so a resumed run and
every DDP rank see exactly the data they would have without the interruption or the split:

- clean: a file with probability proportional to its duration (every second of speech is
  equally likely), a crop at a uniform offset, its first channel; another offset (up to
  :data:`CLEAN_TRIES` in all) while the crop is silent (below :data:`SILENT_RMS`).
- room, with probability ``rir_prob``: an impulse response, uniformly. The noisy input holds
  the speech through the whole response (channel c of the response for microphone c; the
  speech before the crop is read too, so its reverberation reaches into the crop as it would
  in the whole file); the target is the speech through the direct path and the first
  :data:`EARLY_S` after it (early reflections) of the first channel, aligned with the direct
  path and at the dry crop's level: the built-in corpus's recipe (:func:`reverberate`, which
  build.py calls; :class:`RoomFilter` computes the same faster for crops). Without a room,
  every microphone gets the dry speech.
- noise: ``k`` files, ``k`` uniform in ``noises_per_example``, each with probability
  proportional to its duration and cropped at a uniform offset (a file shorter than the crop
  loops from a random point), each at unit RMS, summed. A multi-channel model gets the
  file's own channels when it has enough, else an independent crop per microphone.
- SNR uniform in ``snr_range``: the power of the speech as it is in the noisy input over the
  noise power, both over the crop (:func:`scale_to_snr`, the corpus's definition).
- level uniform in ``level_range`` (noisy RMS in dBFS); the target gets the same gain, and
  both are lowered when a peak would exceed :data:`PEAK` (:func:`level_gain`).

Only the crop's span of a file is read (soundfile's ``start``/``frames``), so long files
cost what short ones do. A pool file that has become unreadable since the check (deleted,
truncated) raises :class:`PoolFileError` naming it: training stops with that one line and
the last checkpoint as it was.

Libraries: pyroomacoustics simulates the built-in corpus's bank of impulse responses
(build.py), soxr resamples (:func:`sekd.audio.resample`), scipy convolves. audiomentations
and torch-audiomentations were not taken: their noise and impulse-response transforms
change one signal with parameters from their own random state, while here the target must
go through another filter (direct path + early reflections) than the input, from draws
that depend on (seed, epoch, index) alone. lhotse would bring its manifests and data
pipeline, a large dependency for the hundred lines below.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy import fft
from scipy.signal import fftconvolve
from torch.utils.data import Dataset

from ..audio import SAMPLE_RATE, resample
from ..errors import SekdError
from .datasets import crop_seed
from .noise import rms
from .pools import PoolFile, Pools

EARLY_S = 0.05              # the target keeps the direct path and this much of the response after it
PEAK = 0.99                 # neither noisy nor target may peak above this after the level gain
SILENT_RMS = 1e-4           # −80 dBFS: a crop below it holds no speech (or no noise)
CLEAN_TRIES = 4             # crop offsets tried for a clean file before a silent crop is taken
RESAMPLE_MARGIN_S = 0.01    # read this much more on each side of a crop at another rate (filter edges)


class PoolFileError(SekdError):
    """A pool file that cannot be read mid-run; the message names it.

    A DataLoader worker's exception comes back as ``type(traceback text)``; the last line of
    that text is this error's own message, which is all the user needs.
    """

    def __init__(self, message: str):
        if message.startswith(f"Caught {type(self).__name__}"):
            message = message.rstrip().splitlines()[-1].split(f"{type(self).__name__}: ", 1)[-1]
        super().__init__(message)


def scale_to_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``noise`` scaled so that power(speech) / power(noise) is ``snr_db``, both over their whole span."""
    return noise * (rms(speech) / rms(noise) / 10 ** (snr_db / 20))


def level_gain(noisy: np.ndarray, clean: np.ndarray, level_dbfs: float) -> float:
    """The gain that sets the noisy RMS to ``level_dbfs``, lowered when a peak of either would exceed PEAK."""
    gain = 10 ** (level_dbfs / 20) / rms(noisy)
    return min(gain, PEAK / max(np.abs(noisy).max(), np.abs(clean).max()))


def reverberate(speech: np.ndarray, rir: np.ndarray, direct: int, before: int = 0,
                n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Dry ``speech`` through a room: ``(reverberant [C, n], target [n])``, aligned with the direct path.

    ``rir``: ``[C, L]``, one response per microphone; ``direct``: the sample of the direct
    path in channel 0. The output covers ``speech[before:before + n]`` (default: all after
    ``before``); the samples before it feed only the reverberation that reaches into it.
    The target is the speech through channel 0's direct path and first EARLY_S (early
    reflections). Both are scaled so that the target has the dry speech's RMS.
    """
    n = len(speech) - before if n is None else n
    span = slice(before + direct, before + direct + n)
    wet = np.stack([fftconvolve(speech, h)[span] for h in rir])
    early = fftconvolve(speech, rir[0, : direct + int(EARLY_S * SAMPLE_RATE)])[span]
    level = rms(early)
    gain = rms(speech[before:before + n]) / level if level > 0 else 1.0
    return wet * gain, early * gain


@dataclass(frozen=True)
class RoomFilter:
    """An impulse response ready for crops of ``n`` samples: :func:`reverberate` at a fraction of its cost.

    One FFT of the speech serves every microphone and the target, the response's spectra are
    computed once (:func:`room_filter` keeps the recent ones), the FFT is only as long as the
    speech (the output span is the part of the circular convolution that does not wrap
    around), in float32. ``tests/test_mixing.py`` checks it against :func:`reverberate`.
    """

    n: int
    length: int               # L, the response's length
    direct: int
    size: int                 # FFT size, at least n + L - 1
    wet: np.ndarray           # [C, size // 2 + 1]: every microphone's response
    early: np.ndarray         # [size // 2 + 1]: channel 0's direct path and early reflections

    @property
    def before(self) -> int:
        """Samples of speech before the crop that reach it."""
        return self.length - 1 - self.direct

    def apply(self, speech: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(reverberant [C, n], target [n])`` of dry ``speech`` ``[before + n + direct]``, as :func:`reverberate`."""
        spectrum = fft.rfft(speech.astype(np.float32), self.size)
        span = slice(self.length - 1, self.length - 1 + self.n)
        wet = fft.irfft(spectrum * self.wet, self.size)[:, span]
        early = fft.irfft(spectrum * self.early, self.size)[span]
        level = rms(early)
        gain = rms(speech[self.before:self.before + self.n]) / level if level > 0 else 1.0
        return wet * gain, early * gain


def room_filter_from(rir: np.ndarray, n: int) -> RoomFilter:
    """The :class:`RoomFilter` of ``rir`` ``[C, L]`` for crops of ``n`` samples."""
    direct = int(np.argmax(np.abs(rir[0])))
    size = fft.next_fast_len(n + rir.shape[1] - 1, real=True)
    rir = rir.astype(np.float32)
    return RoomFilter(n, rir.shape[1], direct, size, fft.rfft(rir, size),
                      fft.rfft(rir[0, : direct + int(EARLY_S * SAMPLE_RATE)], size))


@functools.lru_cache(maxsize=64)  # per process: the built-in bank (64) stays in memory, ~0.5 MB per 1 s crop
def room_filter(file: PoolFile, channels: int, n: int) -> RoomFilter:
    """The :class:`RoomFilter` of a pool's impulse response file (its first ``channels``)."""
    rir = read_frames(file, 0, file.frames)[:channels]
    if rir.shape[0] < channels:
        raise PoolFileError(f"{file.path}: {rir.shape[0]} channel(s), the model takes {channels}")
    return room_filter_from(resample(rir, file.rate, SAMPLE_RATE), n)


def read_frames(file: PoolFile, start: int, frames: int) -> np.ndarray:
    """``[channels, frames]`` float32 from ``start`` (file samples); PoolFileError naming a file that changed."""
    path = file.path
    try:
        data, _ = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types; all mean "not audio we can read"
        reason = "no such file" if not path.is_file() else f"cannot read audio ({exc})"
        raise PoolFileError(f"{path}: {reason}; it was a good pool file when training started") from None
    if len(data) < frames:
        raise PoolFileError(f"{path}: holds fewer samples than when training started (truncated?): samples "
                            f"{start}-{start + frames} of {file.frames} are gone")
    if not np.all(np.isfinite(data)):
        raise PoolFileError(f"{path}: the audio contains NaN or infinite samples")
    return np.ascontiguousarray(data.T)


def read_span(file: PoolFile, start: int, n: int) -> np.ndarray:
    """``[channels, n]`` at 16 kHz from 16 kHz sample ``start`` of ``file``; zeros outside the file."""
    if file.rate == SAMPLE_RATE:
        first, stop, out = start, start + n, np.zeros((file.channels, n), dtype=np.float32)
    else:  # the span at the file's rate, widened for the resampling filter's edges, then resampled
        margin = int(np.ceil(file.rate * RESAMPLE_MARGIN_S))
        first = int(np.floor(start * file.rate / SAMPLE_RATE)) - margin
        stop = int(np.ceil((start + n) * file.rate / SAMPLE_RATE)) + margin
        out = np.zeros((file.channels, stop - first), dtype=np.float32)
    lo, hi = max(first, 0), min(stop, file.frames)
    if hi > lo:
        out[:, lo - first:hi - first] = read_frames(file, lo, hi - lo)
    if file.rate == SAMPLE_RATE:
        return out
    out = resample(out, file.rate, SAMPLE_RATE)
    skip = int(round(start - first * SAMPLE_RATE / file.rate))
    out = out[:, skip:skip + n]
    return np.pad(out, ((0, 0), (0, n - out.shape[1])))


def _by_duration(files: list[PoolFile]) -> np.ndarray:
    """Cumulative probabilities of drawing each file, proportional to its duration."""
    seconds = np.array([f.seconds for f in files], dtype=np.float64)
    return np.cumsum(seconds) / seconds.sum()


def _draw(cumulative: np.ndarray, rng: np.random.Generator) -> int:
    return min(int(np.searchsorted(cumulative, rng.random(), side="right")), len(cumulative) - 1)


@dataclass
class Mixture:
    """One example and what it was made of (the tests read the parts)."""

    noisy: np.ndarray        # [M, N]: speech + noise
    clean: np.ndarray        # [N]: the target
    speech: np.ndarray       # [M, N]: the speech as it is in ``noisy``
    noise: np.ndarray        # [M, N]: the noise as it is in ``noisy``
    snr_db: float
    level_dbfs: float
    clean_file: Path
    clean_start: int         # the crop's first sample in the clean file, at 16 kHz
    noise_files: list[Path]
    rir_file: Path | None


class OnlineMixDataset(Dataset):
    """Training examples mixed afresh from ``pools`` (see the module docstring); a drop-in for CropDataset.

    An item is ``(index, item seed)`` from :class:`~sekd.data.datasets.EpochBatchSampler` (or
    a bare index, whose example depends on the index alone). ``len()`` is an epoch: as many
    crops as the clean pool's duration holds.
    """

    def __init__(self, pools: Pools, crop_samples: int, in_channels: int = 1,
                 snr_range: tuple[float, float] = (-5.0, 20.0), level_range: tuple[float, float] = (-35.0, -15.0),
                 rir_prob: float = 0.4, noises_per_example: tuple[int, int] = (1, 1)):
        for pool in ("clean", "noise") + (("rir",) if rir_prob > 0 else ()):
            if not pools.files.get(pool):
                hint = "; set data.rir_prob=0 to train without rooms" if pool == "rir" else ""
                raise SekdError(f"{pools.root}: the {pool} pool is empty ({pools.layout} layout){hint}")
        self.pools, self.crop, self.in_channels = pools, crop_samples, in_channels
        self.snr_range, self.level_range = tuple(snr_range), tuple(level_range)
        self.rir_prob, self.noises_per_example = rir_prob, tuple(noises_per_example)
        self.clean_weights = _by_duration(pools.files["clean"])
        self.noise_weights = _by_duration(pools.files["noise"])

    def __len__(self) -> int:
        return max(1, int(self.pools.seconds("clean") * SAMPLE_RATE // self.crop))

    def __getitem__(self, item: int | tuple[int, int]):
        _, seed = item if isinstance(item, tuple) else (item, crop_seed(0, 0, item))
        mixture = self.draw(seed)
        return torch.from_numpy(mixture.noisy), torch.from_numpy(mixture.clean)

    def draw(self, seed: int) -> Mixture:
        """The example of item seed ``seed``: the same seed, the same example."""
        rng = np.random.default_rng(seed)
        n, m = self.crop, self.in_channels
        clean_file = self.pools.files["clean"][_draw(self.clean_weights, rng)]
        rir_file = self.pools.files["rir"][rng.integers(len(self.pools.files["rir"]))] \
            if rng.random() < self.rir_prob else None
        room = room_filter(rir_file, m, n) if rir_file else None
        before, after = (room.before, room.direct) if room else (0, 0)  # speech whose reverberation reaches the crop
        for _ in range(CLEAN_TRIES):
            start = int(rng.integers(0, max(1, clean_file.samples - n + 1)))
            dry = read_span(clean_file, start - before, before + n + after)[0]
            if rms(dry[before:before + n]) >= SILENT_RMS:
                break
        speech, target = room.apply(dry) if room else (np.repeat(dry[None], m, axis=0), dry)
        noise = np.zeros((m, n), dtype=np.float32)
        count = int(rng.integers(self.noises_per_example[0], self.noises_per_example[1], endpoint=True))
        noise_files = [self.pools.files["noise"][_draw(self.noise_weights, rng)] for _ in range(count)]
        for file in noise_files:
            part = self._noise_crop(file, rng)
            if (level := rms(part)) >= SILENT_RMS:  # a silent stretch adds nothing (rather than amplified LSBs)
                noise += part / level
        snr_db, level_dbfs = float(rng.uniform(*self.snr_range)), float(rng.uniform(*self.level_range))
        if noise.any() and speech.any():
            noise = scale_to_snr(speech, noise, snr_db)
        noisy = speech + noise
        gain = level_gain(noisy, target, level_dbfs) if noisy.any() else 1.0
        return Mixture((noisy * gain).astype(np.float32), (target * gain).astype(np.float32), speech * gain,
                       noise * gain, snr_db, level_dbfs, clean_file.path, start, [f.path for f in noise_files],
                       rir_file.path if rir_file else None)

    def _noise_crop(self, file: PoolFile, rng: np.random.Generator) -> np.ndarray:
        """``[M, crop]`` of one noise file: its own channels when it has M, else one crop per microphone."""
        n, m = self.crop, self.in_channels
        own = file.channels >= m
        rows = []
        for channel in range(1 if own else m):
            if file.samples < n:  # short noise: the whole file in a loop from a random point
                whole = read_span(file, 0, file.samples)
                span = whole[:, (rng.integers(file.samples) + np.arange(n)) % file.samples]
            else:
                span = read_span(file, int(rng.integers(0, file.samples - n + 1)), n)
            rows.append(span[:m] if own else span[channel % file.channels][None])
        return np.concatenate(rows)
