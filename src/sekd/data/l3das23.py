"""The built-in 8-channel corpus in the L3DAS23 Task 1 layout (``sekd data build OUT --layout l3das23``).

The set-up of the L3DAS23 speech-enhancement task, simulated from the built-in corpus's
sources (same speakers per split, same noise files per split; see build.py):

- microphones: two first-order Ambisonics microphones, A and B, 20 cm apart in the
  horizontal plane, both aligned with the room's axes. Each is an ideal coincident
  capsule set (an omni and three figure-of-eight capsules along the axes), which is
  first-order B-format: channels in ACN order W, Y, Z, X with SN3D normalisation, so a
  plane wave from azimuth ``az`` and elevation ``el`` gives Y/W = sin(az)cos(el),
  Z/W = sin(el), X/W = cos(az)cos(el).
- rooms: pyroomacoustics shoeboxes (Sabine RT60 0.2-0.7 s). pyroomacoustics gives the
  image sources and their wall damping; the B-format responses are computed here from
  each image's direction of arrival (amplitude 1/(4πd), fractional delays by a windowed
  sinc). The image order is capped at ``MAX_ORDER`` and the RIR at ``RIR_S``, which
  shortens the longest tails a little.
- one mixture: one utterance of one speaker of the split (so that its transcript is
  known where the source has one), after a lead-in of up to 0.5 s, at one position
  0.5-3 m from mic A, and one to three noises (types of ``noise.NOISE_TYPES``) at other
  positions of the same room; the second and third only over part of the clip. SNR and
  level as in build.py, measured on mic A's W channel.
- target: the dry mono utterance at the level and time of its direct path in mic A's W
  channel (the RIRs are scaled so that this direct path has gain 1).

Output, as the challenge ships it: ``OUT/<folder>/data/<id>_A.wav`` and ``<id>_B.wav``
(4 channels each, 16 kHz PCM-16), ``OUT/<folder>/labels/<id>.wav`` (mono) and
``labels/<id>.txt`` (transcript, only where the speech had a text: synthetic speakers),
with the folders of ``SPLIT_FOLDERS``; ``OUT/mixtures.csv`` (what went into each
mixture), ``OUT/ATTRIBUTION.md`` and ``OUT/corpus.json``, written last (its presence with
the same settings marks a complete corpus; building again is then a no-op).
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyroomacoustics as pra
from scipy.signal import fftconvolve

from ..audio import SAMPLE_RATE, atomic_write_text, remove_stale_temps, write_audio
from ..errors import SekdError
from . import build
from .build import DEFAULT_SIZE, LEAD_S, LEVEL_DBFS, PACKAGES, PEAK, SMALL_SIZE, SNR_DB, Voice, _clear, _map, _rng
from .debian import attribution_markdown, ensure_packages, package_version
from .noise import NOISE_TYPES, load_noise, make_noise, noise_files, rms
from .sources import SPLITS, load_utterance, select_utterances

RECIPE_VERSION = 1
SPLIT_FOLDERS = {"train": "L3DAS23_Task1_train100", "valid": "L3DAS23_Task1_dev", "test": "L3DAS23_Task1_test"}
OWN_NAMES = {*SPLIT_FOLDERS.values(), "mixtures.csv", "corpus.json", "ATTRIBUTION.md"}
MIXTURE_COLUMNS = ("split", "id", "speaker", "source", "language", "transcript", "noise_types", "snr_db", "room",
                   "duration_s")

MIC_SPACING_M = 0.2
RT60_S = (0.2, 0.7)
ROOM_DIMS_M = ((4.0, 4.0, 2.7), (10.0, 8.0, 4.0))
WALL_MARGIN_M = 0.5
SOURCE_DISTANCE_M = (0.5, 3.0)
POSITIONS_PER_ROOM = 6   # source positions simulated per room; a mixture uses up to four
MAX_ORDER = 40
RIR_S = 0.8
SINC_HALF = 15           # taps on each side of the fractional-delay filter
NOISES = (1, 3)          # noise sources per mixture
EXTRA_NOISE_GAIN_DB = (-6.0, 0.0)
TAIL_S = 0.2             # silence after the utterance


def foa_gains(directions: np.ndarray) -> np.ndarray:
    """ACN/SN3D first-order gains ``[4, K]`` (W, Y, Z, X) of unit directions of arrival ``[3, K]`` (x, y, z)."""
    return np.stack([np.ones(directions.shape[1]), directions[1], directions[2], directions[0]])


def foa_rir(images: np.ndarray, damping: np.ndarray, mic: np.ndarray, length: int) -> np.ndarray:
    """B-format RIR ``[4, length]`` at ``mic`` of image sources ``[3, K]`` with wall damping ``[K]``.

    Each image arrives after ``SINC_HALF + d/c`` samples with amplitude ``damping/(4πd)``,
    weighted by :func:`foa_gains` of its direction; images arriving later than the RIR's
    end are left out.
    """
    offset = images - mic[:, None]
    distance = np.linalg.norm(offset, axis=0)
    delay = SINC_HALF + distance / pra.constants.get("c") * SAMPLE_RATE
    keep = delay < length - SINC_HALF - 1
    offset, distance, delay, damping = offset[:, keep], distance[keep], delay[keep], damping[keep]
    gains = foa_gains(offset / distance) * (damping / (4 * np.pi * distance))
    start = np.floor(delay).astype(np.int64)
    taps = np.arange(-SINC_HALF, SINC_HALF + 1)
    lag = taps[None, :] - (delay - start)[:, None]                      # (K, taps)
    kernel = np.sinc(lag) * (0.5 + 0.5 * np.cos(np.pi * lag / (SINC_HALF + 1)))
    index = (start[:, None] + taps[None, :]).ravel()
    return np.stack([np.bincount(index, weights=(kernel * g[:, None]).ravel(), minlength=length)[:length]
                     for g in gains])


def simulate_foa(dims: np.ndarray, source: np.ndarray, mics: list[np.ndarray], absorption: float | None,
                 max_order: int, length: int) -> np.ndarray:
    """RIRs ``[4 * len(mics), length]`` from ``source`` to B-format microphones at ``mics`` in a shoebox.

    ``absorption`` is the walls' energy absorption (None: anechoic, which needs ``max_order`` 0).
    """
    material = pra.Material(absorption if absorption is not None else 1.0)
    room = pra.ShoeBox(dims, fs=SAMPLE_RATE, materials=material, max_order=max_order, air_absorption=False)
    room.add_source(source)
    room.add_microphone(mics[0])
    room.image_source_model()
    images, damping = room.sources[0].images, room.sources[0].damping[0]
    return np.concatenate([foa_rir(images, damping, mic, length) for mic in mics])


@dataclass(frozen=True)
class AmbisonicRoom:
    rirs: list[np.ndarray]  # per source position: [8, L], mic A then mic B, scaled to direct gain 1 at A's W
    direct: list[int]       # per position: sample of the direct path at mic A
    description: str


def _simulate_room(task: tuple[int, str, int]) -> AmbisonicRoom:
    seed, split, k = task
    rng = _rng(seed, split, "ambisonic-room", k)
    dims = rng.uniform(*ROOM_DIMS_M)
    margin = WALL_MARGIN_M + MIC_SPACING_M
    mic_a = np.append(rng.uniform(margin, dims[:2] - margin), rng.uniform(1.0, 1.6))
    angle = rng.uniform(0, 2 * np.pi)
    mic_b = mic_a + MIC_SPACING_M * np.array([np.cos(angle), np.sin(angle), 0.0])
    rt60 = rng.uniform(*RT60_S)
    absorption, order = pra.inverse_sabine(rt60, dims)
    length = int(RIR_S * SAMPLE_RATE)
    rirs, direct = [], []
    while len(rirs) < POSITIONS_PER_ROOM:
        distance, azimuth = rng.uniform(*SOURCE_DISTANCE_M), rng.uniform(0, 2 * np.pi)
        source = np.array([mic_a[0] + distance * np.cos(azimuth), mic_a[1] + distance * np.sin(azimuth),
                           rng.uniform(1.0, 1.9)])
        if np.any(source < WALL_MARGIN_M) or np.any(source > dims - WALL_MARGIN_M):
            continue
        rir = simulate_foa(dims, source, [mic_a, mic_b], absorption, min(order, MAX_ORDER), length)
        d = np.linalg.norm(source - mic_a)
        rirs.append((rir * 4 * np.pi * d).astype(np.float32))
        direct.append(int(round(SINC_HALF + d / pra.constants.get("c") * SAMPLE_RATE)))
    description = f"rt60={rt60:.2f};dims={dims[0]:.1f}x{dims[1]:.1f}x{dims[2]:.1f}"
    return AmbisonicRoom(rirs, direct, description)


@dataclass(frozen=True)
class SplitState:
    """What the mixing workers of one split share."""

    name: str
    seed: int
    max_samples: int
    out: Path
    voices: list[Voice]
    texts: list[list[str]]   # per voice, per clip: the transcript ("" when unknown)
    weights: np.ndarray
    rooms: list[AmbisonicRoom]
    noise: dict[str, list[np.ndarray]]

    talkers = build.SplitState.talkers  # the same babble talkers: it reads only ``voices``


def _state() -> SplitState:
    return build._STATE  # set in each worker by build._map


def _spatialise(audio: np.ndarray, room: AmbisonicRoom, position: int) -> np.ndarray:
    """``[8, n]``: ``audio`` from ``position`` at both microphones, aligned with the direct path at A."""
    start = room.direct[position]
    return fftconvolve(audio[None], room.rirs[position], axes=1)[:, start:start + len(audio)]


def _partial(noise: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``noise`` kept over a random stretch of 30-100% of its length, with 50 ms fades."""
    n = len(noise)
    span = int(rng.uniform(0.3, 1.0) * n)
    start = int(rng.integers(0, n - span + 1))
    envelope = np.zeros(n)
    envelope[start:start + span] = 1.0
    fade = min(int(0.05 * SAMPLE_RATE), span // 2)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        envelope[start:start + fade] *= ramp
        envelope[start + span - fade:start + span] *= ramp[::-1]
    return noise * envelope


def _mix(index: int) -> dict[str, str]:
    """Make and write mixture ``index`` of the current split; returns its row of mixtures.csv."""
    s = _state()
    rng = _rng(s.seed, s.name, "ambisonic-mixture", index)
    v = int(rng.choice(len(s.voices), p=s.weights))
    voice = s.voices[v]
    c = int(rng.integers(len(voice.clips)))
    clip, text = voice.clips[c], s.texts[v][c]
    lead = int(rng.uniform(*LEAD_S) * SAMPLE_RATE)
    n = min(lead + len(clip) + int(TAIL_S * SAMPLE_RATE), s.max_samples)
    if lead + len(clip) > n:
        text = ""  # the utterance is cut: its text no longer says what is heard
    clean = np.zeros(n)
    clean[lead:lead + len(clip)] = clip[:n - lead]
    room = s.rooms[rng.integers(len(s.rooms))]
    positions = rng.permutation(POSITIONS_PER_ROOM)
    speech = _spatialise(clean, room, positions[0])
    kinds = [str(k) for k in rng.choice(list(NOISE_TYPES), size=int(rng.integers(NOISES[0], NOISES[1], endpoint=True)),
                                        p=list(NOISE_TYPES.values()))]
    noise = np.zeros_like(speech)
    for i, kind in enumerate(kinds):
        source = make_noise(kind, n, rng, s.noise, s.talkers(voice.speaker))
        source = source / max(rms(source), 1e-9)
        if i:
            source = _partial(source, rng) * 10 ** (rng.uniform(*EXTRA_NOISE_GAIN_DB) / 20)
        noise += _spatialise(source, room, positions[1 + i])
    snr_db = rng.uniform(*SNR_DB)
    noisy = speech + noise * (rms(speech[0]) / max(rms(noise[0]), 1e-9) / 10 ** (snr_db / 20))
    gain = 10 ** (rng.uniform(*LEVEL_DBFS) / 20) / rms(noisy[0])
    gain = min(gain, PEAK / max(np.abs(noisy).max(), np.abs(clean).max()))
    mixture_id = f"{s.name}-{index:05d}"
    folder = s.out / SPLIT_FOLDERS[s.name]
    write_audio(folder / "data" / f"{mixture_id}_A.wav", noisy[:4] * gain)
    write_audio(folder / "data" / f"{mixture_id}_B.wav", noisy[4:] * gain)
    write_audio(folder / "labels" / f"{mixture_id}.wav", clean * gain)
    if text:
        atomic_write_text(folder / "labels" / f"{mixture_id}.txt", text + "\n")
    return {"split": s.name, "id": mixture_id, "speaker": voice.speaker, "source": voice.source,
            "language": voice.language, "transcript": "yes" if text else "no", "noise_types": "+".join(kinds),
            "snr_db": f"{snr_db:.2f}", "room": room.description, "duration_s": f"{n / SAMPLE_RATE:.3f}"}


def _prepare_split(split: str, seed: int, small: bool, out: Path, workers: int, progress: bool) -> SplitState:
    size = SMALL_SIZE if small else DEFAULT_SIZE
    utterances = select_utterances(split, _rng(seed, split, "speech"), size.utterances_per_voice,
                                   size.sentences_per_voice)
    clips = _map(load_utterance, utterances, workers, f"{split}: speech", progress)
    voices: dict[tuple[str, str], tuple[Voice, list[str]]] = {}
    for utt, clip in zip(utterances, clips, strict=True):
        if clip is not None:
            voice, texts = voices.setdefault((utt.speaker, utt.language),
                                             (Voice(utt.speaker, utt.source, utt.language), []))
            voice.clips.append(clip)
            texts.append(utt.text)
    rooms = _map(_simulate_room, [(seed, split, k) for k in range(size.rooms[split])], workers,
                 f"{split}: ambisonic rooms", progress)
    noise = {kind: [a for a in map(load_noise, paths) if a is not None] for kind, paths in noise_files(split).items()}
    empty = [kind for kind, files in noise.items() if not files]
    if len({key[0] for key in voices}) < 2 or empty:
        raise SekdError(f"split {split}: too little source audio ({len(voices)} voices, no noise files of kind: "
                        f"{', '.join(empty) or '-'}); are the Debian packages complete?")
    voice_list = [v for v, _ in voices.values()]
    return SplitState(split, seed, int(size.duration_s[1] * SAMPLE_RATE), out, voice_list,
                      [t for _, t in voices.values()], build._voice_weights(voice_list), rooms, noise)


def _settings(seed: int, small: bool) -> dict:
    return json.loads(json.dumps({
        "layout": "l3das23", "recipe": RECIPE_VERSION, "seed": seed, "small": small, "sample_rate": SAMPLE_RATE,
        "size": asdict(SMALL_SIZE if small else DEFAULT_SIZE), "snr_db": SNR_DB, "level_dbfs": LEVEL_DBFS,
        "rt60_s": RT60_S, "mic_spacing_m": MIC_SPACING_M, "max_order": MAX_ORDER, "rir_s": RIR_S,
        "noises": NOISES, "noise_types": NOISE_TYPES, "split_folders": SPLIT_FOLDERS,
    }))


def _is_complete(out: Path, settings: dict) -> bool:
    rows = build.finished_rows(out, "mixtures.csv", settings)
    folder = {split: out / name for split, name in SPLIT_FOLDERS.items()}
    return bool(rows) and all((folder[r["split"]] / "data" / f"{r['id']}_{mic}.wav").is_file()
                              for r in rows for mic in "AB")


def build_l3das23(out_dir: str | os.PathLike, seed: int = 0, small: bool = False, workers: int | None = None,
                  progress: bool = True) -> Path:
    """Build the 8-channel corpus in the L3DAS23 Task 1 layout into ``out_dir``; returns ``out_dir``.

    ``small``: 40/8/8 mixtures of at most 3 s (tests); default 900/150/150 of at most 6 s.
    ``workers`` processes (default: all CPUs) do not change the output. See the module docstring.
    """
    workers = build.build_workers(seed, workers)
    out = Path(out_dir)
    settings = _settings(seed, small)
    if _is_complete(out, settings):
        return out
    _clear(out, OWN_NAMES)
    remove_stale_temps(out)
    ensure_packages(PACKAGES)
    size = SMALL_SIZE if small else DEFAULT_SIZE
    rows, splits = [], {}
    for split in SPLITS:
        state = _prepare_split(split, seed, small, out, workers, progress)
        split_rows = _map(_mix, range(size.mixtures[split]), workers, f"{split}: mixtures", progress, state)
        rows += split_rows
        splits[split] = {"folder": SPLIT_FOLDERS[split], "mixtures": len(split_rows),
                         "hours": round(sum(float(r["duration_s"]) for r in split_rows) / 3600, 4),
                         "transcripts": sum(r["transcript"] == "yes" for r in split_rows),
                         "speakers": sorted({v.speaker for v in state.voices}), "rooms": len(state.rooms)}
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MIXTURE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "mixtures.csv", buffer.getvalue())
    atomic_write_text(out / "ATTRIBUTION.md", attribution_markdown(PACKAGES))
    info = {**settings, "splits": splits, "packages": {p: package_version(p) for p in PACKAGES}}
    atomic_write_text(out / "corpus.json", json.dumps(info, indent=2) + "\n")
    return out
