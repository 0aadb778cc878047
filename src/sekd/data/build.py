"""The built-in corpus (``sekd data build``): noisy/clean pairs made from Debian packages.

Everything is derived at build time from packages of a registry (speech: sources.py,
noise: noise.py), so the corpus needs no download and is not redistributable (see
``OUT/ATTRIBUTION.md``). Speakers of valid and test never occur in train, and the recorded
noise files of train are not used in valid or test. The ``ood`` split holds real speech
and recorded noise from packages that no other split uses (``sources.OOD_PACKAGES``,
``noise.OOD_PACKAGES``).

One mixture, with random numbers drawn from (seed, split, index) only, so the output is
bit-identical for any number of workers:

- speech: 3-6 s (2-3 s with ``small``) of one speaker of the split: utterances (or single
  words) with short pauses after a lead-in of up to 0.5 s. The synthetic speakers share
  ``SYNTHETIC_SHARE`` of the mixtures; each real speaker's share grows with the square root
  of its hours of speech, so small speakers are heard and large ones do not dominate.
- room (40% of the mixtures): the speech convolved with one of a pool of RIRs simulated
  per split (pyroomacoustics shoebox, Sabine RT60 0.2-0.8 s, source 0.5-3 m from the
  microphone). The noisy input holds the full reverberant speech; the clean target is the
  speech convolved with the direct path and the first 50 ms of the RIR, aligned with the
  direct path and at the dry speech's level. The task is denoising plus suppression of
  the late reverberation. The manifest's ``room`` gives the RT60 measured on the RIR.
- noise: one type drawn by ``noise.choose_noise`` (a recorded family of the split or a
  generated type) at an SNR uniform in [-5, 20] dB, where the SNR is the power of the
  speech as it is in the noisy input (reverberant or not) over the noise power, both over
  the whole clip.
- level: noisy and clean get the same gain, to a noisy RMS uniform in [-35, -15] dBFS,
  lowered for both when a peak of either would exceed 0.99.

Output: ``OUT/<split>/{noisy,clean}/<id>.wav`` (16 kHz mono PCM-16) for train, valid, test
and ood, ``OUT/manifest.csv``, ``OUT/corpus.json`` (seed, settings, sizes, and the facts
``sekd data check`` prints: speech hours and speakers per split, noise families) and
``OUT/ATTRIBUTION.md``. The manifest is written last and atomically, so a folder with a
manifest holds a complete corpus. Building again into a folder that holds a complete corpus
of the same seed and settings does nothing; otherwise what an earlier build left there is
removed and the corpus rebuilt.

Pools for on-the-fly mixing (``data.mixing: online``, mixing.py), from the train split only
(:func:`write_pools`): ``OUT/pools/clean/`` (every train utterance once: each voice's
utterances in a random order, with short pauses, in files of about 10 s, all of one
speaker; a voice with less than 5 s repeats its utterances up to that), ``OUT/pools/noise/``
(files of 10 s of every noise type, as many of each as its share of the mixtures; babble of
the train speakers) and ``OUT/pools/rir/`` (64 impulse responses: the train split's 32
rooms, then 32 more drawn alike, as 32-bit float WAV), all at -25 dBFS RMS but the
responses, and ``OUT/pools/pools.json`` (settings, counts, hours, each clean file's speaker,
each room) written last. A complete corpus without (complete) pools gets them on the next
build, its mixtures untouched.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import shutil
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyroomacoustics as pra

from ..audio import SAMPLE_RATE, atomic_write_text, remove_stale_temps, write_audio
from ..workers import die_with_parent
from ..errors import SekdError
from ..progress import progress_bar
from .debian import attribution_markdown, ensure_packages, package_version
from .mixing import EARLY_S, PEAK, level_gain, reverberate, scale_to_snr
from .noise import FAMILIES, choose_noise, fill, load_noise, make_noise, noise_files, noise_type_shares, rms
from .noise import OOD_PACKAGES as NOISE_OOD_PACKAGES
from .noise import PACKAGES as NOISE_PACKAGES
from .sources import OOD_PACKAGES as SPEECH_OOD_PACKAGES
from .sources import OOD_SPLIT, RESERVED, SPLITS, load_utterance, select_utterances
from .sources import PACKAGES as SPEECH_PACKAGES

PACKAGES = tuple(dict.fromkeys((*SPEECH_PACKAGES, *NOISE_PACKAGES)))  # train, valid, test
OOD_PACKAGES = tuple(dict.fromkeys((*SPEECH_OOD_PACKAGES, *NOISE_OOD_PACKAGES)))  # the ood split alone
ALL_PACKAGES = tuple(dict.fromkeys((*PACKAGES, *OOD_PACKAGES)))
BUILT_SPLITS = (*SPLITS, OOD_SPLIT)
MANIFEST_COLUMNS = ("split", "id", "noisy", "clean", "speaker", "source", "language", "noise_type",
                    "snr_db", "room", "duration_s")
OWN_NAMES = {*BUILT_SPLITS, "manifest.csv", "corpus.json", "ATTRIBUTION.md", "pools"}
RECIPE_VERSION = 2  # raise when the recipe changes, so that older corpora are rebuilt
POOLS_RECIPE_VERSION = 2  # the same for the pools alone

SNR_DB = (-5.0, 20.0)
LEVEL_DBFS = (-35.0, -15.0)
REVERB_SHARE = 0.4
SYNTHETIC_SHARE = 0.15  # of the mixtures of a split with synthetic speakers (train, valid, test)
RT60_S = (0.2, 0.8)
ROOM_DIMS_M = ((3.0, 3.0, 2.5), (10.0, 8.0, 4.0))  # low and high corners of length, width, height
SOURCE_DISTANCE_M = (0.5, 3.0)
WALL_MARGIN_M = 0.5
PAUSE_S = (0.1, 0.5)
LEAD_S = (0.0, 0.5)
SILENT_NOISE_TRIES = 10  # draws of a noise type before its silence is an error
SILENT_NOISE_RMS = 1e-4  # -80 dBFS: a noise this quiet (a silent stretch of a file) would be amplified dither
POOL_LEVEL_DBFS = -25.0  # RMS of every clean and noise pool file (online mixing sets its own levels)


@dataclass(frozen=True)
class CorpusSize:
    mixtures: dict[str, int]
    duration_s: tuple[float, float]
    utterances_per_voice: int | None  # recorded, per (speaker, language); None: all of them
    sentences_per_voice: int          # synthetic, per (speaker, language)
    rooms: dict[str, int]
    noise_files_per_family: int | None = None  # the first files of each recorded family; None: all of them


DEFAULT_SIZE = CorpusSize(mixtures={"train": 2400, "valid": 150, "test": 150, "ood": 150}, duration_s=(3.0, 6.0),
                          utterances_per_voice=None, sentences_per_voice=30,
                          rooms={"train": 32, "valid": 8, "test": 8, "ood": 8})
SMALL_SIZE = CorpusSize(mixtures={"train": 40, "valid": 8, "test": 8, "ood": 8}, duration_s=(2.0, 3.0),
                        utterances_per_voice=5, sentences_per_voice=2,
                        rooms={"train": 3, "valid": 2, "test": 2, "ood": 2}, noise_files_per_family=2)


@dataclass(frozen=True)
class PoolSize:
    noise_files: int
    file_s: float  # the length of every noise file, and about that of the clean files
    rirs: int      # the train split's rooms first, then more drawn alike


# Clean: every train utterance once; noise: about a fifth of its hours; 32 rooms more than the corpus's train rooms.
DEFAULT_POOLS = PoolSize(noise_files=400, file_s=10.0, rirs=64)
SMALL_POOLS = PoolSize(noise_files=9, file_s=4.0, rirs=3)


def _rng(seed: int, *keys: str | int) -> np.random.Generator:
    """A generator that depends only on ``seed`` and ``keys`` (strings are hashed with CRC-32)."""
    codes = [zlib.crc32(k.encode()) if isinstance(k, str) else k for k in keys]
    return np.random.default_rng([seed, *codes])


@dataclass(frozen=True)
class Room:
    rir: np.ndarray
    direct: int  # sample index of the direct path
    description: str


def _simulate_room(task: tuple[int, str, int]) -> Room:
    seed, split, k = task
    rng = _rng(seed, split, "room", k)
    dims = rng.uniform(*ROOM_DIMS_M)
    mic = np.append(rng.uniform(WALL_MARGIN_M, dims[:2] - WALL_MARGIN_M), rng.uniform(1.0, 1.6))
    while True:
        distance, angle = rng.uniform(*SOURCE_DISTANCE_M), rng.uniform(0, 2 * np.pi)
        source = np.array([mic[0] + distance * np.cos(angle), mic[1] + distance * np.sin(angle),
                           rng.uniform(1.2, 1.9)])
        if np.all(source >= WALL_MARGIN_M) and np.all(source <= dims - WALL_MARGIN_M):
            break
    absorption, max_order = pra.inverse_sabine(rng.uniform(*RT60_S), dims)
    room = pra.ShoeBox(dims, fs=SAMPLE_RATE, materials=pra.Material(absorption), max_order=max_order)
    room.add_source(source)
    room.add_microphone(mic)
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float64)
    rt60 = pra.experimental.measure_rt60(rir, fs=SAMPLE_RATE, decay_db=30)
    description = (f"rt60={rt60:.2f};dims={dims[0]:.1f}x{dims[1]:.1f}x{dims[2]:.1f};"
                   f"dist={np.linalg.norm(source - mic):.1f}")
    return Room(rir, int(np.argmax(np.abs(rir))), description)


def _reverberate(speech: np.ndarray, room: Room) -> tuple[np.ndarray, np.ndarray]:
    """(full reverberant speech, direct path + early reflections), aligned with ``speech``."""
    wet, early = reverberate(speech, room.rir[None], room.direct)
    return wet[0], early


@dataclass(frozen=True)
class Voice:
    speaker: str
    source: str
    language: str
    clips: list[np.ndarray] = field(default_factory=list)


@dataclass(frozen=True)
class SplitState:
    """What the mixing workers of one split share."""

    name: str
    seed: int
    size: CorpusSize
    out: Path
    voices: list[Voice]
    weights: np.ndarray  # probability of each voice
    rooms: list[Room]
    noise: dict[str, list[np.ndarray]]  # the split's loaded files of each recorded family that has any
    pool_size: PoolSize = DEFAULT_POOLS

    @property
    def families(self) -> list[str]:
        return list(self.noise)

    def talkers(self, speaker: str) -> list[list[np.ndarray]]:
        """The clips of every other speaker of the split, one list per speaker (for babble)."""
        clips: dict[str, list[np.ndarray]] = {}
        for voice in self.voices:
            if voice.speaker != speaker:
                clips.setdefault(voice.speaker, []).extend(voice.clips)
        return list(clips.values())


_STATE: SplitState | None = None


def _set_state(state: SplitState | None) -> None:
    global _STATE
    _STATE = state


def _init_worker(state: SplitState | None, parent_pid: int) -> None:
    die_with_parent(parent_pid)  # a killed build must not leave its workers mixing
    _set_state(state)


def _audible_noise(s: SplitState, kind: str, n: int, rng: np.random.Generator,
                   talkers: list[list[np.ndarray]]) -> np.ndarray:
    """``make_noise``, drawn again when it is silent (a silent stretch of a recorded file)."""
    for _ in range(SILENT_NOISE_TRIES):
        noise = make_noise(kind, n, rng, s.noise, talkers)
        if rms(noise) > SILENT_NOISE_RMS:
            return noise
    raise SekdError(f"split {s.name}: noise type {kind} gave {SILENT_NOISE_TRIES} silent draws")


def _mix(index: int) -> dict[str, str]:
    """Make and write mixture ``index`` of the current split; returns its manifest row."""
    s = _STATE
    rng = _rng(s.seed, s.name, "mixture", index)
    n = int(rng.uniform(*s.size.duration_s) * SAMPLE_RATE)
    voice = s.voices[rng.choice(len(s.voices), p=s.weights)]
    speech = fill(voice.clips, n, rng, gap_s=PAUSE_S, lead_s=LEAD_S)
    room = s.rooms[rng.integers(len(s.rooms))] if rng.random() < REVERB_SHARE else None
    reverberant, clean = _reverberate(speech, room) if room else (speech, speech)
    noise_type = choose_noise(rng, s.families)
    noise = _audible_noise(s, noise_type, n, rng, s.talkers(voice.speaker))
    snr_db = rng.uniform(*SNR_DB)
    noisy = reverberant + scale_to_snr(reverberant, noise, snr_db)
    gain = level_gain(noisy, clean, rng.uniform(*LEVEL_DBFS))
    mixture_id = f"{s.name}-{index:05d}"
    paths = {kind: f"{s.name}/{kind}/{mixture_id}.wav" for kind in ("noisy", "clean")}
    write_audio(s.out / paths["noisy"], noisy * gain)
    write_audio(s.out / paths["clean"], clean * gain)
    return {"split": s.name, "id": mixture_id, **paths, "speaker": voice.speaker, "source": voice.source,
            "language": voice.language, "noise_type": noise_type, "snr_db": f"{snr_db:.2f}",
            "room": room.description if room else "none", "duration_s": f"{n / SAMPLE_RATE:.3f}"}


def _pool_gain(audio: np.ndarray) -> np.ndarray:
    return audio * level_gain(audio, audio, POOL_LEVEL_DBFS)


def _clean_pool_plan(state: SplitState) -> list[tuple[int, tuple[int, ...]]]:
    """(voice, its clips) of each clean pool file: every clip of every voice once, each voice's in a random order,
    over about (its seconds / ``file_s``) files of similar length."""
    plan = []
    for v, voice in enumerate(state.voices):
        order = _rng(state.seed, "pool", "clean", voice.speaker, voice.language).permutation(len(voice.clips))
        seconds = np.array([len(voice.clips[i]) for i in order]) / SAMPLE_RATE
        files = max(1, round(seconds.sum() / state.pool_size.file_s))
        before = np.cumsum(seconds) - seconds  # speech before each clip, in this order
        file_of = np.minimum((before / (seconds.sum() / files)).astype(int), files - 1)
        plan += [(v, tuple(int(i) for i in order[file_of == k])) for k in range(files) if (file_of == k).any()]
    return plan


def _pool_clean(task: tuple[int, int, tuple[int, ...]]) -> tuple[str, float, float]:
    """Write clean pool file ``index``: the given clips of one voice with pauses, repeated up to half of ``file_s``
    when shorter; returns (speaker, seconds, seconds of distinct speech)."""
    index, v, clips = task
    s = _STATE
    rng = _rng(s.seed, "pool", "clean", index)
    voice = s.voices[v]
    parts, length, k = [], 0, 0
    while k < len(clips) or length < s.pool_size.file_s / 2 * SAMPLE_RATE:
        clip = voice.clips[clips[k % len(clips)]]
        pause = np.zeros(int(rng.uniform(*PAUSE_S) * SAMPLE_RATE)) if parts else np.zeros(0)
        parts += [pause, clip]
        length += len(pause) + len(clip)
        k += 1
    speech = np.concatenate(parts)
    write_audio(s.out / "pools" / "clean" / f"{index:05d}.wav", _pool_gain(speech))
    return voice.speaker, len(speech) / SAMPLE_RATE, sum(len(voice.clips[i]) for i in clips) / SAMPLE_RATE


def _pool_noise(task: tuple[int, str]) -> float:
    """Write noise pool file ``index`` of type ``kind`` (babble: the train speakers)."""
    index, kind = task
    s = _STATE
    rng = _rng(s.seed, "pool", "noise", index)
    noise = _audible_noise(s, kind, int(s.pool_size.file_s * SAMPLE_RATE), rng, s.talkers(""))
    write_audio(s.out / "pools" / "noise" / f"{index:05d}-{kind}.wav", _pool_gain(noise))
    return len(noise) / SAMPLE_RATE


def _noise_kinds(count: int, families: Sequence[str]) -> list[str]:
    """``count`` noise types in the shares of ``noise_type_shares(families)`` (largest remainders), in its order."""
    shares = noise_type_shares(families)
    quotas = {kind: share * count for kind, share in shares.items()}
    counts = {kind: int(q) for kind, q in quotas.items()}
    for kind in sorted(quotas, key=lambda k: counts[k] - quotas[k])[:count - sum(counts.values())]:
        counts[kind] += 1
    return [kind for kind in shares for _ in range(counts[kind])]


def _pool_settings(seed: int, small: bool) -> dict:
    """Everything the pools depend on, as JSON values (compared on a rebuild)."""
    return json.loads(json.dumps({
        "pools_recipe": POOLS_RECIPE_VERSION, "corpus": _settings(seed, small),
        "size": asdict(SMALL_POOLS if small else DEFAULT_POOLS), "level_dbfs": POOL_LEVEL_DBFS,
    }))


def _pools_complete(folder: Path, settings: dict) -> bool:
    try:
        info = json.loads((folder / "pools.json").read_text())
    except (OSError, ValueError):
        return False
    files = info.get("files") or {}
    return (info.get("settings") == settings and bool(files)
            and all(len(list((folder / pool).glob("*.wav"))) == count for pool, count in files.items()))


def write_pools(state: SplitState, settings: dict, workers: int, progress: bool) -> None:
    """``OUT/pools/{clean,noise,rir}/`` and ``pools.json`` from the train split's ``state`` (see the docstring)."""
    folder = state.out / "pools"
    if folder.exists():
        shutil.rmtree(folder)
    size = state.pool_size
    plan = [(index, v, clips) for index, (v, clips) in enumerate(_clean_pool_plan(state))]
    clean = _map(_pool_clean, plan, workers, "pools: speech", progress, state)
    kinds = _noise_kinds(size.noise_files, state.families)
    noise_s = _map(_pool_noise, list(enumerate(kinds)), workers, "pools: noise", progress, state)
    more = [(state.seed, state.name, k) for k in range(len(state.rooms), size.rirs)]
    rooms = state.rooms[:size.rirs] + _map(_simulate_room, more, workers, "pools: rooms", progress)
    for k, room in enumerate(rooms):
        write_audio(folder / "rir" / f"room-{k:03d}.wav", room.rir, subtype="FLOAT")
    info = {"settings": settings, "files": {"clean": len(clean), "noise": len(noise_s), "rir": len(rooms)},
            "hours": {"clean": round(sum(s for _, s, _ in clean) / 3600, 4), "noise": round(sum(noise_s) / 3600, 4)},
            "clean_distinct_speech_hours": round(sum(d for _, _, d in clean) / 3600, 4),  # each utterance once
            "clean_speakers": [speaker for speaker, _, _ in clean],  # of clean/00000.wav, 00001.wav, ...
            "noise_types": dict(Counter(kinds)),
            "rooms": [room.description for room in rooms]}
    atomic_write_text(folder / "pools.json", json.dumps(info, indent=2) + "\n")


def _map(fn: Callable, items: Sequence, workers: int, desc: str, progress: bool,
         state: SplitState | None = None) -> list:
    """``[fn(x) for x in items]`` in order, over ``workers`` processes that see ``state``."""
    bar = {"total": len(items), "desc": desc, "disable": not progress}
    if workers == 1:
        _set_state(state)
        try:
            return list(progress_bar(map(fn, items), **bar))
        finally:
            _set_state(None)
    with multiprocessing.Pool(workers, initializer=_init_worker, initargs=(state, os.getpid())) as pool:
        return list(progress_bar(pool.imap(fn, items, chunksize=4), **bar))


def _voice_weights(voices: list[Voice]) -> np.ndarray:
    """The probability of each voice in a mixture.

    Synthetic speakers share SYNTHETIC_SHARE equally (all of it goes to the real ones in a
    split without synthetic speakers); each real speaker's share of the rest is proportional
    to the square root of its seconds of speech; a speaker's voices split its share by seconds.
    """
    seconds = np.array([sum(len(c) for c in v.clips) / SAMPLE_RATE for v in voices])
    by_speaker: dict[str, float] = {}
    for voice, s in zip(voices, seconds, strict=True):
        by_speaker[voice.speaker] = by_speaker.get(voice.speaker, 0.0) + s
    synthetic = {v.speaker for v in voices if v.source == "synthetic"}
    real = [speaker for speaker in by_speaker if speaker not in synthetic]
    real_share = 1.0 - SYNTHETIC_SHARE if synthetic and real else 1.0
    root = {speaker: np.sqrt(by_speaker[speaker]) for speaker in real}
    per_speaker = ({s: (1.0 - real_share) / len(synthetic) for s in synthetic}
                   | {s: real_share * root[s] / sum(root.values()) for s in real})
    weights = np.array([per_speaker[v.speaker] * s / by_speaker[v.speaker] for v, s in zip(voices, seconds)])
    return weights / weights.sum()


def _prepare_split(split: str, seed: int, size: CorpusSize, out: Path, workers: int, progress: bool,
                   pool_size: PoolSize = DEFAULT_POOLS) -> SplitState:
    utterances = select_utterances(split, _rng(seed, split, "speech"), size.utterances_per_voice,
                                   size.sentences_per_voice)
    clips = _map(load_utterance, utterances, workers, f"{split}: speech", progress)
    voices: dict[tuple[str, str], Voice] = {}
    for utt, clip in zip(utterances, clips, strict=True):
        if clip is not None:
            voice = voices.setdefault((utt.speaker, utt.language), Voice(utt.speaker, utt.source, utt.language))
            voice.clips.append(clip)
    rooms = _map(_simulate_room, [(seed, split, k) for k in range(size.rooms[split])], workers,
                 f"{split}: rooms", progress)
    paths = [(family, path) for family, files in noise_files(split).items()
             for path in files[:size.noise_files_per_family]]
    noise: dict[str, list[np.ndarray]] = {}  # a family without (loadable) files here is left out
    for (family, _), audio in zip(paths, _map(load_noise, [p for _, p in paths], workers, f"{split}: noise",
                                              progress), strict=True):
        if audio is not None:
            noise.setdefault(family, []).append(audio)
    speakers = {v.speaker for v in voices.values()}
    if len(speakers) < 2 or (split != OOD_SPLIT and not noise):
        raise SekdError(f"split {split}: too little source audio ({len(speakers)} speakers, {len(noise)} recorded "
                        "noise families); are the Debian packages complete?")
    voice_list = list(voices.values())
    return SplitState(split, seed, size, out, voice_list, _voice_weights(voice_list), rooms, noise, pool_size)


def _settings(seed: int, small: bool) -> dict:
    """Everything the output depends on, as JSON values (compared on a rebuild)."""
    return json.loads(json.dumps({
        "recipe": RECIPE_VERSION, "seed": seed, "small": small, "sample_rate": SAMPLE_RATE,
        "size": asdict(SMALL_SIZE if small else DEFAULT_SIZE), "snr_db": SNR_DB, "level_dbfs": LEVEL_DBFS,
        "peak": PEAK, "reverb_share": REVERB_SHARE, "early_reflections_s": EARLY_S, "rt60_s": RT60_S,
        "synthetic_share": SYNTHETIC_SHARE, "noise_families": FAMILIES,
    }))


def build_workers(seed, workers: int | None) -> int:
    """Checks a build's seed and worker count; returns the worker count (default: all CPUs)."""
    if not isinstance(seed, int) or seed < 0:
        raise SekdError(f"seed must be a non-negative integer (got {seed!r})")
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise SekdError(f"workers must be at least 1 (got {workers})")
    return workers


def finished_rows(out: Path, table: str, settings: dict) -> list[dict]:
    """The rows of ``out/table`` when an earlier build with these ``settings`` finished; else []."""
    try:
        info = json.loads((out / "corpus.json").read_text())
        with open(out / table, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, ValueError):
        return []
    return rows if all(info.get(key) == value for key, value in settings.items()) else []


def _is_complete(out: Path, settings: dict) -> bool:
    rows = finished_rows(out, "manifest.csv", settings)
    return bool(rows) and all((out / row[kind]).is_file() for row in rows for kind in ("noisy", "clean"))


def _clear(out: Path, own_names: set[str] = OWN_NAMES) -> None:
    """Remove what an earlier build (which writes ``own_names``) left in ``out``; refuse anything else."""
    if out.exists() and not out.is_dir():
        raise SekdError(f"{out}: exists and is not a folder")
    foreign = sorted(p.name for p in out.iterdir() if p.name not in own_names and not p.name.startswith(".")) \
        if out.is_dir() else []
    if foreign:
        raise SekdError(f"{out}: holds {', '.join(foreign[:5])}, which no corpus build wrote; "
                        "build into an empty or new folder")
    (out / "manifest.csv").unlink(missing_ok=True)  # first: without it the folder never counts as complete
    for name in own_names - {"manifest.csv"}:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _manifest_text(rows: list[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _hours(samples: int) -> float:
    return round(samples / SAMPLE_RATE / 3600, 4)


def _split_facts(state: SplitState, rows: list[dict[str, str]]) -> dict:
    """What corpus.json says of one split: mixtures, its speakers and their distinct speech, its noise."""
    samples: dict[str, int] = {}
    languages: dict[str, list[str]] = {}
    source = {v.speaker: v.source for v in state.voices}
    for voice in state.voices:
        samples[voice.speaker] = samples.get(voice.speaker, 0) + sum(len(c) for c in voice.clips)
        languages.setdefault(voice.speaker, []).append(voice.language)
    real = [s for s in sorted(samples) if source[s] != "synthetic"]
    synthetic = [s for s in sorted(samples) if source[s] == "synthetic"]
    return {
        "mixtures": len(rows),
        "hours": round(sum(float(r["duration_s"]) for r in rows) / 3600, 4),
        "speakers": sorted(samples),
        "real_speakers": len(real),
        "real_speakers_with_30s": sum(samples[s] >= 30 * SAMPLE_RATE for s in real),  # the others say a few words
        "synthetic_speakers": len(synthetic),
        "speech_hours": {"real": _hours(sum(samples[s] for s in real)),  # distinct speech, each utterance once
                         "synthetic": _hours(sum(samples[s] for s in synthetic))},
        "speaker_table": {s: {"source": source[s], "languages": sorted(set(languages[s])), "hours": _hours(samples[s])}
                          for s in sorted(samples)},
        "utterances": sum(len(v.clips) for v in state.voices),
        "rooms": len(state.rooms),
        "noise_files": {family: len(files) for family, files in state.noise.items()},
        "noise_hours": {family: _hours(sum(len(a) for a in files)) for family, files in state.noise.items()},
        "noise_types": dict(sorted(Counter(r["noise_type"] for r in rows).items())),
    }


def build_corpus(out_dir: str | os.PathLike, seed: int = 0, small: bool = False, workers: int | None = None,
                 progress: bool = True) -> Path:
    """Build the built-in corpus into ``out_dir`` and return the path of its manifest.

    ``small`` makes a tiny corpus for tests (40/8/8/8 mixtures of 2-3 s); the default one has
    about 3 h of train and 11 min each of valid, test and ood mixtures (2400/150/150/150 of
    3-6 s), from all the recorded speech of the packages.
    ``workers`` processes (default: all CPUs) do not change the output. Installs missing
    Debian packages first (see debian.py). See the module docstring for the recipe; the
    pools for online mixing are written too (:func:`write_pools`), and added to a complete
    corpus that lacks them.
    """
    workers = build_workers(seed, workers)
    out = Path(out_dir)
    manifest = out / "manifest.csv"
    settings, pool_settings = _settings(seed, small), _pool_settings(seed, small)
    size, pool_size = (SMALL_SIZE, SMALL_POOLS) if small else (DEFAULT_SIZE, DEFAULT_POOLS)
    if _is_complete(out, settings):
        if not _pools_complete(out / "pools", pool_settings):  # a corpus built before the pools existed
            ensure_packages(PACKAGES)
            write_pools(_prepare_split("train", seed, size, out, workers, progress, pool_size), pool_settings,
                        workers, progress)
        return manifest
    _clear(out)
    remove_stale_temps(out)  # a killed build's .corpus.json.* and the like
    ensure_packages(ALL_PACKAGES)
    rows: list[dict[str, str]] = []
    splits: dict[str, dict] = {}
    for split in BUILT_SPLITS:
        state = _prepare_split(split, seed, size, out, workers, progress, pool_size)
        split_rows = _map(_mix, range(size.mixtures[split]), workers, f"{split}: mixtures", progress, state)
        if split == "train":
            write_pools(state, pool_settings, workers, progress)
        rows += split_rows
        splits[split] = _split_facts(state, split_rows)
    atomic_write_text(out / "ATTRIBUTION.md", attribution_markdown(ALL_PACKAGES))
    info = {**settings, "splits": splits, "reserved_sources": list(RESERVED), "ood_packages": list(OOD_PACKAGES),
            "packages": {p: package_version(p) for p in ALL_PACKAGES}}
    atomic_write_text(out / "corpus.json", json.dumps(info, indent=2) + "\n")
    atomic_write_text(manifest, _manifest_text(rows))
    return manifest
