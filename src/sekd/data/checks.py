"""Data checked before work starts: every pair's headers and the cheap facts about its samples.

A bad file found at step 10 000 (or in every validation) costs a run; found up front it
costs a line. :func:`pair_problems` lists, for one pair, what would make training or
scoring it fail or mislead: unreadable or empty files, a truncated WAV, a channel count the
model cannot take, a stereo reference, lengths that differ, a clip shorter than one STFT
frame (pystoi and PESQ cannot score it), NaN or infinite samples, a silent reference
(SI-SDR against silence is −90 dB and drowns any mean). ``sekd train``, ``distill``,
``evaluate`` and ``study`` refuse data with problems, listing each with its file;
``sekd data check`` reports the same.

Pools for on-the-fly mixing get the same scrutiny per file (:func:`pool_file_problems`:
unreadable, empty, truncated, NaN, silent, a clean file shorter than a training crop, a
noise file shorter than one STFT frame, an impulse response with fewer channels than the
model's microphones); :func:`require_good_pools` refuses them, or leaves them out with
``data.skip_bad``.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

from ..audio import wav_truncation
from ..errors import SekdError
from .pairs import Pair
from .pools import PoolFile, Pools

log = logging.getLogger("sekd")

MIN_SAMPLES = 512        # at 16 kHz: one STFT frame of the default n_fft, and above pystoi's ~410
SILENT_PEAK = 1e-5       # a reference whose peak is below −100 dBFS holds no speech
BLOCK = 1 << 18          # samples read at a time: bounded memory for long files


def _scan_samples(path: Path) -> tuple[bool, float]:
    """(every sample finite, peak) of a whole file, read in blocks."""
    finite, peak = True, 0.0
    for block in sf.blocks(str(path), blocksize=BLOCK, dtype="float32", always_2d=True):
        if not np.all(np.isfinite(block)):
            finite = False
            block = block[np.isfinite(block)]
        if block.size:
            peak = max(peak, float(np.abs(block).max()))
    return finite, peak


def pair_problems(pair: Pair, in_channels: int | None = None, min_samples: int = MIN_SAMPLES) -> list[str]:
    """What is wrong with one pair, each line naming its file; empty when the pair is fine.

    ``in_channels``: the model's input channels (the noisy file's, then further microphones'
    as :func:`~sekd.data.pairs.read_channels` takes them); None skips that check.
    """
    problems: list[str] = []
    infos: dict[Path, sf._SoundFileInfo] = {}
    for path in (pair.noisy, *pair.more_noisy, pair.clean):
        if not path.is_file():
            problems.append(f"{path}: no such file")
            continue
        try:
            infos[path] = sf.info(str(path))
        except Exception as exc:  # soundfile raises several types; all mean "not audio we can read"
            problems.append(f"{path}: cannot read audio ({exc})")
            continue
        if infos[path].frames == 0:
            problems.append(f"{path}: the file holds no samples")
            del infos[path]
            continue
        if note := wav_truncation(path):
            problems.append(note)
    noisy, clean = infos.get(pair.noisy), infos.get(pair.clean)
    if in_channels is not None and noisy:
        used = noisy.channels
        for path in pair.more_noisy:
            if used >= in_channels or path not in infos:
                break
            used += infos[path].channels
        if used != in_channels:
            problems.append(f"{pair.noisy}: {used} channel(s), the model takes {in_channels}")
    if clean and clean.channels != 1:
        problems.append(f"{pair.clean}: the clean target must be mono, it has {clean.channels} channels")
    if noisy and clean:
        if noisy.frames * clean.samplerate != clean.frames * noisy.samplerate:
            problems.append(f"{pair.clean}: {clean.frames / clean.samplerate:.3f} s, but {pair.noisy} lasts "
                            f"{noisy.frames / noisy.samplerate:.3f} s")
        if round(clean.frames * 16000 / clean.samplerate) < min_samples:
            problems.append(f"{pair.clean}: {clean.frames} samples, shorter than one STFT frame "
                            f"({min_samples} at 16 kHz): it cannot be scored")
    for path, info in infos.items():
        try:
            finite, peak = _scan_samples(path)
        except Exception as exc:
            problems.append(f"{path}: cannot read audio ({exc})")
            continue
        if not finite:
            problems.append(f"{path}: the audio contains NaN or infinite samples")
        elif path == pair.clean and peak < SILENT_PEAK:
            problems.append(f"{path}: the clean reference is silent (peak {peak:.1e}); metrics against it "
                            "are meaningless")
    return problems


def check_pairs(pairs: list[Pair], in_channels: int | None = None, min_samples: int = MIN_SAMPLES,
                threads: int = 4) -> dict[str, list[str]]:
    """``{pair id: problems}`` for the pairs that have any, in the order given (files read in ``threads``)."""
    with ThreadPoolExecutor(threads) as pool:  # libsndfile reads outside the GIL
        found = pool.map(lambda pair: pair_problems(pair, in_channels, min_samples), pairs)
        return {pair.id: problems for pair, problems in zip(pairs, found) if problems}


def require_good_pairs(pairs: list[Pair], what: str, in_channels: int | None = None,
                       min_samples: int = MIN_SAMPLES) -> None:
    """Raise SekdError listing every problem of ``pairs`` (``what`` says which data, e.g. 'training data')."""
    bad = check_pairs(pairs, in_channels, min_samples)
    if bad:
        lines = [line for problems in bad.values() for line in problems]
        raise SekdError(f"{what}: {len(bad)} of {len(pairs)} pair(s) have problems; fix or remove them "
                        "(sekd data check lists them too):\n" + "\n".join(f"  {line}" for line in lines))


def pool_file_problems(file: PoolFile, pool: str, crop_samples: int = MIN_SAMPLES,
                       in_channels: int | None = None) -> list[str]:
    """What is wrong with one file of pool ``pool`` (clean, noise, rir), each line naming it; empty when fine.

    ``crop_samples``: the training crop at 16 kHz (a shorter clean file cannot give one);
    ``in_channels``: the model's microphones (an impulse response needs as many); None skips it.
    """
    path, problems = file.path, []
    if note := wav_truncation(path):
        problems.append(note)
    try:
        finite, peak = _scan_samples(path)
    except Exception as exc:
        return [*problems, f"{path}: cannot read audio ({exc})"]
    if not finite:
        problems.append(f"{path}: the audio contains NaN or infinite samples")
    elif peak < SILENT_PEAK:
        problems.append(f"{path}: silent (peak {peak:.1e}): no {'speech' if pool == 'clean' else pool} in it")
    if pool == "clean" and file.samples < crop_samples:
        problems.append(f"{path}: {file.seconds:.3f} s, shorter than a training crop "
                        f"({crop_samples / 16000:g} s, data.crop_seconds)")
    if pool == "noise" and file.samples < MIN_SAMPLES:
        problems.append(f"{path}: {file.samples} samples at 16 kHz, shorter than one STFT frame ({MIN_SAMPLES})")
    if pool == "rir" and in_channels is not None and file.channels < in_channels:
        problems.append(f"{path}: {file.channels} channel(s), the model takes {in_channels} microphones")
    return problems


def check_pools(pools: Pools, crop_samples: int = MIN_SAMPLES, in_channels: int | None = None,
                threads: int = 4) -> dict[Path, list[str]]:
    """``{path: problems}`` for the pool files that have any (files read in ``threads``)."""
    files = [(pool, f) for pool, fs in pools.files.items() for f in fs]
    with ThreadPoolExecutor(threads) as pool_of_threads:  # libsndfile reads outside the GIL
        found = pool_of_threads.map(lambda item: pool_file_problems(item[1], item[0], crop_samples, in_channels), files)
        return {f.path: problems for (_, f), problems in zip(files, found) if problems}


def require_good_pools(pools: Pools, what: str, crop_samples: int, in_channels: int | None = None,
                       skip_bad: bool = False) -> Pools:
    """The pools, checked: SekdError listing every bad file, or with ``skip_bad`` the pools without them
    (their count and the first few logged)."""
    bad = check_pools(pools, crop_samples, in_channels)
    lines = pools.problems + [line for problems in bad.values() for line in problems]
    if not lines:
        return pools
    count = len(bad) + len(pools.problems)  # files whose header could not be read are not in the pools already
    total = count + sum(len(files) for files in pools.files.values()) - len(bad)
    if not skip_bad:
        raise SekdError(f"{what}: {count} of {total} pool file(s) have problems; fix or remove them, or set "
                        "data.skip_bad=true to leave them out (sekd data check lists them too):\n"
                        + "\n".join(f"  {line}" for line in lines))
    log.warning("warning: %s: left out %d of %d pool file(s) with problems (data.skip_bad), e.g.:\n%s", what, count,
                total, "\n".join(f"  {line}" for line in lines[:5]))
    return pools.without(set(bad))


def built_corpus_facts(data: str | Path) -> list[str]:
    """Lines for ``sekd data check`` from a built-in corpus's ``corpus.json`` (written by ``sekd data build``): the
    speech hours and speakers per split (real and synthetic apart), the noise families with their hours, the ``ood``
    split and the sources kept out of every split. Empty for any other data."""
    path = Path(data) / "corpus.json"
    if not path.is_file():
        return []
    try:
        info = json.loads(path.read_text())
        splits = info["splits"]
        small = " (small)" if info["small"] else ""
        lines = [f"built-in corpus: recipe {info['recipe']}, seed {info['seed']}{small}",
                 "split   mixtures  mix hours  speech hours (real + synthetic)  "
                 "speakers: real (with >= 30 s) + synthetic"]
        for name, split in splits.items():
            real, synthetic = split["speech_hours"]["real"], split["speech_hours"]["synthetic"]
            lines.append(f"{name:<7} {split['mixtures']:>8}  {split['hours']:>9.3f}  {real + synthetic:>12.3f} "
                         f"({real:.3f} + {synthetic:.3f})  {split['real_speakers']:>5} "
                         f"({split['real_speakers_with_30s']}) + {split['synthetic_speakers']}")
        families: dict[str, dict[str, float]] = {}
        for name, split in splits.items():
            for family, hours in split["noise_hours"].items():
                families.setdefault(family, {})[name] = hours
        in_train = sum("train" in per_split for per_split in families.values())
        lines.append(f"recorded noise families: {len(families)}, {in_train} of them in train, "
                     f"{len(families) - in_train} only in ood (hours per split)")
        lines += [f"  {family:<24} " + ", ".join(f"{name} {hours:.3f}" for name, hours in per_split.items())
                  for family, per_split in sorted(families.items())]
        if "ood" in splits:
            ood = splits["ood"]
            lines.append(f"ood: {ood['mixtures']} mixtures, {ood['hours']:.3f} h; {len(ood['speakers'])} speakers "
                         f"({', '.join(ood['speakers'])}), {ood['speech_hours']['real']:.3f} h of distinct speech; "
                         f"packages used in no other split: {', '.join(info.get('ood_packages', []))}")
        if info.get("reserved_sources"):
            lines.append(f"kept out of every split: {'; '.join(info['reserved_sources'])}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return [f"{path}: cannot read the corpus facts ({type(exc).__name__}: {exc})"]
    return lines
