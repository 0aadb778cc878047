"""Noise for the built-in corpus: the noise files of each split and one generator per noise type.

Recorded noise comes from sonic-pi-samples (pads, loops and guitar/bass phrases as
``music``; drums, percussion and effects as ``sfx``) and the Asterisk music on hold
(``moh``: five 8 kHz tracks). Each file belongs to one split, so the test noise is unheard
in training; ``babble`` is made of other speakers of the mixture's own split. The rest is
synthesised: stationary ``white``/``pink``/``brown`` noise, mains ``hum`` and
``transient`` clicks and bursts. Short noises are looped or concatenated to the length.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE, read_audio
from .debian import package_files

PACKAGES = ("sonic-pi-samples", "asterisk-moh-opsound-wav")
MUSIC_FAMILIES = ("ambi", "bass", "guit", "loop")  # sonic-pi file-name prefixes; the others are sfx
NOISE_TYPES = {  # noise type -> share of the mixtures
    "babble": 0.20, "music": 0.10, "moh": 0.10, "sfx": 0.15,
    "white": 0.07, "pink": 0.08, "brown": 0.05, "hum": 0.10, "transient": 0.15,
}
COLOUR_EXPONENTS = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power spectrum ~ 1 / f**exponent
BABBLE_TALKERS = (3, 6)


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


def _split_of(rank: int) -> str:
    """Files of one family, in name order, go round-robin to train, test, train, valid, train."""
    return {1: "test", 3: "valid"}.get(rank % 5, "train")


def noise_files(split: str) -> dict[str, list[Path]]:
    """The recorded noise files of ``split``: {"music": [...], "sfx": [...], "moh": [...]}."""
    families: dict[str, list[Path]] = {}
    for path in package_files("sonic-pi-samples"):
        if path.suffix == ".flac" and path.parent.name == "samples":
            families.setdefault(path.name.split("_")[0], []).append(path)
    families["moh"] = [p for p in package_files("asterisk-moh-opsound-wav") if p.suffix == ".wav"]
    files: dict[str, list[Path]] = {"music": [], "sfx": [], "moh": []}
    for family, paths in sorted(families.items()):
        kind = family if family == "moh" else "music" if family in MUSIC_FAMILIES else "sfx"
        files[kind] += [path for rank, path in enumerate(sorted(paths)) if _split_of(rank) == split]
    return files


def load_noise(path: Path) -> np.ndarray | None:
    """A noise file as peak-normalised mono float32 at 16 kHz; None when silent or under 10 ms."""
    audio = read_audio(path)[0].mean(axis=0)
    peak = np.abs(audio).max()
    if len(audio) < SAMPLE_RATE // 100 or peak == 0:
        return None
    return (audio / peak).astype(np.float32)


def loop_to_length(audio: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of ``audio`` played in a loop from a random point."""
    start = rng.integers(len(audio))
    return audio[(start + np.arange(n)) % len(audio)]


def fill(clips: Sequence[np.ndarray], n: int, rng: np.random.Generator, gap_s: tuple[float, float],
         lead_s: tuple[float, float] = (0.0, 0.0), gain_db: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """``n`` samples of random ``clips`` one after another, with random gaps and gains.

    Starts after a random lead-in; the last clip is cut at ``n``.
    """
    out = np.zeros(n, dtype=np.float64)
    pos = int(rng.uniform(*lead_s) * SAMPLE_RATE)
    while pos < n:
        clip = clips[rng.integers(len(clips))]
        take = min(len(clip), n - pos)
        out[pos:pos + take] = clip[:take] * 10 ** (rng.uniform(*gain_db) / 20)
        pos += len(clip) + int(rng.uniform(*gap_s) * SAMPLE_RATE)
    return out


def coloured(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1/f**exponent (flat below 20 Hz), unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / SAMPLE_RATE), 20.0)
    noise = np.fft.irfft(spectrum * freqs ** (-exponent / 2), n)
    return noise / rms(noise)


def hum(n: int, rng: np.random.Generator) -> np.ndarray:
    """Mains hum: 50 or 60 Hz with random harmonics up to 3 kHz, over faint broadband noise."""
    f0 = rng.choice([50.0, 60.0]) * (1 + rng.uniform(-0.005, 0.005))
    harmonics = np.arange(1, int(3000 // f0) + 1)
    amplitudes = rng.uniform(0.1, 1.0, len(harmonics)) * harmonics ** -rng.uniform(0.5, 1.5)
    phases = rng.uniform(0, 2 * np.pi, len(harmonics))
    t = np.arange(n) / SAMPLE_RATE
    tone = np.zeros(n)
    for k, amplitude, phase in zip(harmonics, amplitudes, phases, strict=True):
        tone += amplitude * np.sin(2 * np.pi * k * f0 * t + phase)
    return tone / rms(tone) + coloured(n, rng, 1.0) * 10 ** (rng.uniform(-30, -15) / 20)


def transient(n: int, rng: np.random.Generator) -> np.ndarray:
    """Clicks (a few ms) and bursts (30-300 ms) at random times, over a very faint floor."""
    out = coloured(n, rng, 0.0) * 10 ** (rng.uniform(-50, -35) / 20)
    for _ in range(max(1, rng.poisson(rng.uniform(1, 5) * n / SAMPLE_RATE))):
        if rng.random() < 0.5:  # click: decaying white noise
            length = int(rng.uniform(0.002, 0.01) * SAMPLE_RATE)
            decay = rng.uniform(0.0005, 0.003) * SAMPLE_RATE
            event = rng.standard_normal(length) * np.exp(-np.arange(length) / decay)
        else:  # burst: a Hann-shaped stretch of coloured noise
            length = int(rng.uniform(0.03, 0.3) * SAMPLE_RATE)
            event = coloured(length, rng, rng.uniform(0.0, 2.0)) * np.hanning(length)
        start = rng.integers(n)
        end = min(n, start + length)
        out[start:end] += event[:end - start] * 10 ** (rng.uniform(-20, 0) / 20)
    return out


def babble(n: int, rng: np.random.Generator, talkers: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
    """3-6 talkers (each a list of clips of one speaker) speaking at once at equal level."""
    count = min(len(talkers), int(rng.integers(BABBLE_TALKERS[0], BABBLE_TALKERS[1], endpoint=True)))
    out = np.zeros(n)
    for i in rng.choice(len(talkers), size=count, replace=False):
        stream = fill(talkers[i], n, rng, gap_s=(0.05, 0.3), lead_s=(0.0, 1.0))
        out += stream / rms(stream)
    return out


def make_noise(kind: str, n: int, rng: np.random.Generator, files: dict[str, list[np.ndarray]],
               talkers: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
    """``n`` samples of noise of type ``kind`` (a key of NOISE_TYPES), at no particular level.

    ``files`` holds the split's loaded noise files per kind, ``talkers`` the clips of the
    split's speakers other than the mixture's own (for babble).
    """
    if kind == "babble":
        return babble(n, rng, talkers)
    if kind in COLOUR_EXPONENTS:
        return coloured(n, rng, COLOUR_EXPONENTS[kind])
    if kind == "hum":
        return hum(n, rng)
    if kind == "transient":
        return transient(n, rng)
    if kind == "sfx":
        return fill(files["sfx"], n, rng, gap_s=(0.0, 0.4), gain_db=(-6.0, 6.0))
    return loop_to_length(files[kind][rng.integers(len(files[kind]))], n, rng)
