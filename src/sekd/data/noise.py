"""Noise for the built-in corpus: the recorded noise families of each split and one generator per noise type.

Recorded noise comes from Debian packages (``PACKAGES``), grouped into *families* by what
they sound like (``FAMILY_SPECS``: vehicles, rain, footsteps, ...; each family's files are
picked by a pattern on their path in one or more packages). Each family's files are split
between train, valid and test by a fixed rule (:func:`split_files`), so the test noise is
unheard in training. The families of ``OOD_PACKAGES`` are used by no other split: they make
the out-of-domain split ``ood``. ``babble`` is made of other speakers of the mixture's own
split; ``white``/``pink``/``brown`` noise, mains ``hum`` and ``transient`` clicks and bursts
are synthesised. :func:`noise_type_shares` gives each type's share of the mixtures.

A family either plays one of its files in a loop from a random point (ambiences, music,
engines) or, for families of short events (footsteps, impacts, animal calls), plays random
files one after another with random gaps and gains.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE, read_audio
from ..errors import SekdError
from .debian import package_files

SPLITS = ("train", "valid", "test", "ood")
AUDIO_SUFFIXES = (".wav", ".ogg", ".oga", ".flac")
# Sources kept out of every split, for a check outside the corpus: never list them.
RESERVED_PACKAGES = ("fillets-ng-data", "alsa-utils", "openttd-opensfx")


@dataclass(frozen=True)
class Family:
    """One kind of recorded noise: where its files are and how it is played."""

    category: str      # a broad kind, e.g. "vehicles", "weather", "animals"
    description: str   # what it sounds like, in a few words
    sources: tuple[tuple[str, str], ...]  # (package, regular expression searched in each file's path)
    events: bool = False       # short sounds played one after another, rather than one file in a loop
    stationary: bool = False   # its statistics hardly change over seconds (rain, engines, fans)
    exclude: str = ""          # regular expression: files whose path matches it are left out


FAMILY_SPECS: dict[str, Family] = {
    "music-loops": Family("music", "drum, guitar, bass and ambient loops and pads (sonic-pi)",
                          (("sonic-pi-samples", r"/samples/(loop|ambi|bass|guit)_[^/]*\.flac$"),)),
    "drums": Family("music", "single drum, percussion and tabla hits (sonic-pi)",
                    (("sonic-pi-samples", r"/samples/(bd|sn|drum|perc|tabla)_[^/]*\.flac$"),), events=True),
    "electronic-sfx": Family("sfx", "electronic blips, glitches, vinyl noise, odd recorded effects (sonic-pi)",
                             (("sonic-pi-samples", r"/samples/(elec|glitch|mehackit|vinyl|misc)_[^/]*\.flac$"),),
                             events=True),
    "music-on-hold": Family("music", "full music tracks at 8 kHz (Asterisk music on hold)",
                            (("asterisk-moh-opsound-wav", r"/moh/[^/]*\.wav$"),)),
}
OOD_FAMILY_NAMES: tuple[str, ...] = ()  # families of OOD_PACKAGES: the ood split only

GENERATED_TYPES = ("babble", "white", "pink", "brown", "hum", "transient")
STATIONARY_GENERATED = frozenset({"white", "pink", "brown", "hum"})
# Shares of the mixtures: recorded families carry most of them (equal shares among the families of
# the split); babble and the synthetic types keep stationary and speech-like noise in view.
RECORDED_SHARE = 0.65
GENERATED_SHARES = {"babble": 0.13, "white": 0.04, "pink": 0.04, "brown": 0.03, "hum": 0.05, "transient": 0.06}

COLOUR_EXPONENTS = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power spectrum ~ 1 / f**exponent
BABBLE_TALKERS = (3, 6)
EVENT_GAP_S = (0.05, 0.8)      # silence between two events of an event family
EVENT_GAIN_DB = (-6.0, 6.0)
MAX_FILES_PER_FAMILY = 150     # larger families keep every k-th file in name order (loading time, memory)
MAX_FILE_S = 60.0              # longer files are cut to their first minute when loaded (memory)
SPLIT_SHARES = {"train": 0.6, "test": 0.2, "valid": 0.2}  # of each in-domain family's files


def _packages(names: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(pkg for name in names for pkg, _ in FAMILY_SPECS[name].sources))


OOD_PACKAGES = _packages(OOD_FAMILY_NAMES)
PACKAGES = _packages([name for name in FAMILY_SPECS if name not in OOD_FAMILY_NAMES])
FAMILIES: dict[str, str] = {name: f"{spec.category}: {spec.description}" for name, spec in FAMILY_SPECS.items()}
IN_DOMAIN_FAMILIES = tuple(name for name in FAMILY_SPECS if name not in OOD_FAMILY_NAMES)  # train, valid, test


def is_stationary(kind: str) -> bool:
    """Whether noise type ``kind`` (a family or a generated type) is stationary."""
    if kind in FAMILY_SPECS:
        return FAMILY_SPECS[kind].stationary
    return kind in STATIONARY_GENERATED


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


def _variant_group(path: Path) -> str:
    """Files that differ only by a trailing number or letter (``step1``, ``step2b``) are variants of one sound."""
    return f"{path.parent}/{re.sub(r'[-_ .]*[0-9]+[a-z]?$', '', path.stem.lower())}"


def split_files(paths: Sequence[Path]) -> dict[str, list[Path]]:
    """One in-domain family's files over train, valid and test.

    Variants of one sound stay in one split: the groups of variants, largest first (then by
    name), each go to the split furthest below its share of the files (``SPLIT_SHARES``). A
    family of fewer than three groups splits its files round-robin by name instead
    (train, test, train, valid, train, ...).
    """
    paths = sorted(paths)
    groups: dict[str, list[Path]] = {}
    for path in paths:
        groups.setdefault(_variant_group(path), []).append(path)
    out: dict[str, list[Path]] = {split: [] for split in SPLIT_SHARES}
    if len(groups) < len(SPLIT_SHARES):
        for rank, path in enumerate(paths):
            out[{1: "test", 3: "valid"}.get(rank % 5, "train")].append(path)
        return out
    for _, members in sorted(groups.items(), key=lambda item: (-len(item[1]), item[0])):
        split = min(SPLIT_SHARES, key=lambda s: len(out[s]) / SPLIT_SHARES[s])  # ties: the table's order
        out[split] += members
    return {split: sorted(files) for split, files in out.items()}


@lru_cache(maxsize=None)
def _installed_files(package: str) -> tuple[Path, ...]:
    return tuple(p for p in package_files(package) if p.suffix.lower() in AUDIO_SUFFIXES)


def family_files(name: str) -> list[Path]:
    """All files of family ``name`` (at most MAX_FILES_PER_FAMILY: every k-th in name order), sorted."""
    spec = FAMILY_SPECS[name]
    files: set[Path] = set()
    for package, pattern in spec.sources:
        files.update(p for p in _installed_files(package)
                     if re.search(pattern, str(p)) and not (spec.exclude and re.search(spec.exclude, str(p))))
    ordered = sorted(files)
    step = -(-len(ordered) // MAX_FILES_PER_FAMILY)
    return ordered[::step] if step > 1 else ordered


def noise_files(split: str) -> dict[str, list[Path]]:
    """The recorded noise files of ``split`` (train, valid, test or ood) per family name.

    Every family of the split is a key, even one without files in it.
    """
    if split not in SPLITS:
        raise SekdError(f"unknown noise split {split!r}; expected one of {', '.join(SPLITS)}")
    if split == "ood":
        return {name: family_files(name) for name in OOD_FAMILY_NAMES}
    return {name: split_files(family_files(name))[split] for name in IN_DOMAIN_FAMILIES}


def noise_type_shares(recorded_families: Sequence[str]) -> dict[str, float]:
    """The share of the mixtures of each noise type, for a split whose recorded families are ``recorded_families``.

    The recorded families share RECORDED_SHARE equally, the generated types the rest in the
    proportions of GENERATED_SHARES (all of it when there is no recorded family). Sums to 1.
    """
    families = sorted(dict.fromkeys(recorded_families))
    unknown = [name for name in families if name not in FAMILY_SPECS]
    if unknown:
        raise SekdError(f"unknown noise families: {', '.join(unknown)}")
    generated_total = sum(GENERATED_SHARES.values())
    generated = 1.0 - RECORDED_SHARE if families else 1.0
    shares = {name: RECORDED_SHARE / len(families) for name in families}
    shares.update({kind: generated * share / generated_total for kind, share in GENERATED_SHARES.items()})
    return shares


# The shares of train, valid and test, whose recorded families are all the in-domain ones.
NOISE_TYPES = noise_type_shares(IN_DOMAIN_FAMILIES)


def choose_noise(rng: np.random.Generator, recorded_families: Sequence[str]) -> str:
    """One noise type drawn in the shares of :func:`noise_type_shares` (one draw from ``rng``)."""
    shares = noise_type_shares(recorded_families)
    return str(rng.choice(list(shares), p=list(shares.values())))


def load_noise(path: Path) -> np.ndarray | None:
    """A noise file as peak-normalised mono float32 at 16 kHz (at most MAX_FILE_S); None when silent or under 10 ms."""
    audio = read_audio(path)[0].mean(axis=0)[:int(MAX_FILE_S * SAMPLE_RATE)]
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
        level = rms(stream)
        if level > 0:  # silent when its lead-in outlasts a very short clip
            out += stream / level
    return out


def make_noise(kind: str, n: int, rng: np.random.Generator, recorded: dict[str, list[np.ndarray]],
               talkers: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
    """``n`` samples of noise of type ``kind`` (a family of FAMILY_SPECS or a generated type), at no particular level.

    ``recorded`` holds the split's loaded noise files per family, ``talkers`` the clips of
    the split's speakers other than the mixture's own (for babble).
    """
    if kind == "babble":
        return babble(n, rng, talkers)
    if kind in COLOUR_EXPONENTS:
        return coloured(n, rng, COLOUR_EXPONENTS[kind])
    if kind == "hum":
        return hum(n, rng)
    if kind == "transient":
        return transient(n, rng)
    if kind not in FAMILY_SPECS:
        raise SekdError(f"unknown noise type {kind!r}")
    clips = recorded.get(kind)
    if not clips:
        raise SekdError(f"noise family {kind!r} has no loaded files in this split")
    if FAMILY_SPECS[kind].events:
        return fill(clips, n, rng, gap_s=EVENT_GAP_S, gain_db=EVENT_GAIN_DB)
    return loop_to_length(clips[rng.integers(len(clips))], n, rng)
