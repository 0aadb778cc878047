"""Speech for the built-in corpus: the speakers, their split, and clean 16 kHz utterances.

Three kinds of speaker, so that a model sees studio, acted and synthetic voices:

- ``studio``: the Asterisk telephony prompts (raw G.722 at 16 kHz); one speaker per voice
  folder (``en_US_f_Allison`` and ``es_MX_f_Allison`` are the same person, so one speaker).
- ``acted``: the Dutch and Czech voice-over of the game Fish Fillets. File names are
  ``<level>-<character>-<line>.ogg``; the two heroes, ``m`` (the small fish) and ``v``
  (the big fish), say most lines, and each language has its own actors, so each
  (language, hero) is one speaker. The few lines of minor characters are not used.
- ``synthetic``: espeak-ng voices speaking the game's dialogue text in ten languages. A
  voice variant (``m3``, ``f2``, ``klatt``...) sets the timbre, so the variant is the speaker.

Speakers are assigned to splits by a fixed table, so valid and test hold unseen studio,
acted and synthetic speakers whatever the seed.
"""

from __future__ import annotations

import functools
import io
import re
import subprocess
from dataclasses import dataclass

import G722
import numpy as np
import soundfile as sf

from ..audio import SAMPLE_RATE, read_audio, resample
from ..errors import SekdError
from .debian import package_files

ASTERISK_LANGUAGES = ("en", "es", "fr", "it", "ru")
FILLETS_LANGUAGES = ("nl", "cs")
FILLETS_HEROES = {"m": "small", "v": "big"}
DIALOGUE_PACKAGE = "fillets-ng-data"
PACKAGES = (
    *(f"asterisk-core-sounds-{lang}-g722" for lang in ASTERISK_LANGUAGES),
    *(f"fillets-ng-data-{lang}" for lang in FILLETS_LANGUAGES),
    DIALOGUE_PACKAGE,
    "espeak-ng",
)

# espeak-ng variant -> the languages that synthetic speaker talks in.
SYNTHETIC_SPEAKERS: dict[str, tuple[str, ...]] = {
    "m1": ("en", "de"), "m2": ("fr", "pl"), "m3": ("es", "ru"), "m6": ("it", "sv"),
    "m7": ("nl", "cs"), "m8": ("en", "pl"), "f1": ("de", "es"), "f2": ("en", "it"),
    "f3": ("ru", "fr"), "klatt": ("sv", "en"), "klatt4": ("cs", "de"),
    "m4": ("en", "de"), "f4": ("es", "it"), "klatt2": ("fr", "ru"),
    "m5": ("en", "fr"), "f5": ("de", "pl"), "klatt3": ("es", "nl"),
}
# Held-out speakers per split: one studio and one acted speaker (one higher, one lower voice)
# and three synthetic ones. Everyone else is in train.
HELD_OUT = {
    "valid": ("asterisk-june", "fillets-cs-big", "espeak-m4", "espeak-f4", "espeak-klatt2"),
    "test": ("asterisk-carlo", "fillets-nl-small", "espeak-m5", "espeak-f5", "espeak-klatt3"),
}
SPLITS = ("train", "valid", "test")

MIN_UTTERANCE_S = 1.0   # shorter clips (after trimming) are skipped
LEVEL_DBFS = -25.0      # RMS of the active frames after normalisation
SILENCE_DB = 40.0       # frames this far below the loudest frame count as silence
ESPEAK_SPEED_WPM = (140, 190)
G722_BYTES_PER_S = 8000  # 64 kbit/s


@dataclass(frozen=True)
class Utterance:
    """One clip to load: a recording (``path``) or a sentence for espeak-ng (``text``)."""

    speaker: str
    source: str  # studio | acted | synthetic
    language: str
    path: str = ""
    text: str = ""
    espeak_voice: str = ""  # "<language>+<variant>"
    espeak_speed: int = 0   # words per minute


def speaker_split(speaker: str) -> str:
    for split, speakers in HELD_OUT.items():
        if speaker in speakers:
            return split
    return "train"


def _asterisk_utterances() -> list[Utterance]:
    folder = re.compile(r"^([a-z]{2})_[A-Z]{2}_[fm]_(\w+)$")  # e.g. fr_CA_f_June
    found = []
    for lang in ASTERISK_LANGUAGES:
        for path in package_files(f"asterisk-core-sounds-{lang}-g722"):
            voice = next((m for m in map(folder.match, path.parts) if m), None)
            # Prompts shorter than this on disk (digits, letters) are too short once trimmed.
            if path.suffix == ".g722" and voice and path.stat().st_size >= 1.5 * MIN_UTTERANCE_S * G722_BYTES_PER_S:
                found.append(Utterance(f"asterisk-{voice.group(2).lower()}", "studio", voice.group(1), str(path)))
    return found


def _fillets_utterances() -> list[Utterance]:
    found = []
    for lang in FILLETS_LANGUAGES:
        for path in package_files(f"fillets-ng-data-{lang}"):
            parts = path.stem.split("-")
            if path.suffix == ".ogg" and path.parent.name == lang and len(parts) >= 3 and parts[1] in FILLETS_HEROES:
                found.append(Utterance(f"fillets-{lang}-{FILLETS_HEROES[parts[1]]}", "acted", lang, str(path)))
    return found


@functools.cache
def _dialogue() -> dict[str, list[str]]:
    """The game's dialogue lines per language, without untranslated ones.

    Each ``dialogs_<lang>.lua`` holds ``dialogId(id, font, english)``, followed in the
    translations by ``dialogStr(translation)``.
    """
    string = r'"((?:[^"\\]|\\.)*)"'
    pattern = re.compile(rf'dialogId\(\s*"[^"]*"\s*,\s*"[^"]*"\s*,\s*{string}\s*\)(?:\s*dialogStr\(\s*{string}\s*\))?')
    lines: dict[str, list[str]] = {}
    for path in package_files(DIALOGUE_PACKAGE):
        match = re.fullmatch(r"dialogs_([a-z]{2})\.lua", path.name)
        if not match:
            continue
        lang = match.group(1)
        for english, translation in pattern.findall(path.read_text(encoding="utf-8", errors="replace")):
            said = english if lang == "en" else translation
            if said and (lang == "en" or said != english):
                lines.setdefault(lang, []).append(" ".join(re.sub(r"\\(.)", r"\1", said).split()))
    return lines


def sentences(language: str) -> list[str]:
    """Distinct dialogue sentences of ``language`` of a length that suits espeak-ng, sorted."""
    return sorted({text for text in _dialogue().get(language, []) if 20 <= len(text) <= 160})


def select_utterances(split: str, rng: np.random.Generator, per_recorded_voice: int,
                      per_synthetic_voice: int) -> list[Utterance]:
    """The utterances of ``split``'s speakers: a random subset per voice (speaker, language).

    Synthetic sentences get a random speaking rate each.
    """
    voices: dict[tuple[str, str], list[Utterance]] = {}
    for utt in _asterisk_utterances() + _fillets_utterances():
        if speaker_split(utt.speaker) == split:
            voices.setdefault((utt.speaker, utt.language), []).append(utt)
    chosen: list[Utterance] = []
    for key in sorted(voices):
        pool = sorted(voices[key], key=lambda u: u.path)
        picks = rng.choice(len(pool), size=min(per_recorded_voice, len(pool)), replace=False)
        chosen += [pool[i] for i in sorted(picks)]
    for variant, languages in SYNTHETIC_SPEAKERS.items():
        speaker = f"espeak-{variant}"
        if speaker_split(speaker) != split:
            continue
        for lang in languages:
            pool = sentences(lang)
            picks = rng.choice(len(pool), size=min(per_synthetic_voice, len(pool)), replace=False)
            chosen += [Utterance(speaker, "synthetic", lang, text=pool[i], espeak_voice=f"{lang}+{variant}",
                                 espeak_speed=int(rng.integers(*ESPEAK_SPEED_WPM, endpoint=True)))
                       for i in sorted(picks)]
    return chosen


def _synthesise(utt: Utterance) -> np.ndarray:
    result = subprocess.run(
        ["espeak-ng", "-v", utt.espeak_voice, "-s", str(utt.espeak_speed), "--stdout", "--stdin"],
        input=utt.text.encode(), capture_output=True, check=True)
    audio, sr = sf.read(io.BytesIO(result.stdout), dtype="float32", always_2d=True)
    return resample(audio.T, sr, SAMPLE_RATE)[0]


def _decode_g722(path: str) -> np.ndarray:
    with open(path, "rb") as fh:
        pcm = G722.G722(SAMPLE_RATE, 64000, use_numpy=False).decode(fh.read())
    return np.asarray(pcm, dtype=np.float32) / 32768.0


def _trim_and_normalise(audio: np.ndarray) -> np.ndarray | None:
    """Cut the silence at both ends (10 ms frames), set the active level; None when too short."""
    hop = SAMPLE_RATE // 100
    frames = audio[: len(audio) // hop * hop].reshape(-1, hop)
    if len(frames) == 0:
        return None
    level = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    active = level > max(level.max() - SILENCE_DB, -70.0)
    if not active.any():
        return None
    first, last = np.flatnonzero(active)[[0, -1]]
    margin = 5  # frames of context kept around the speech
    clip = audio[max(first - margin, 0) * hop: (last + 1 + margin) * hop]
    if len(clip) < MIN_UTTERANCE_S * SAMPLE_RATE:
        return None
    active_rms = np.sqrt(np.mean(10 ** (level[active] / 10)))
    return (clip * (10 ** (LEVEL_DBFS / 20) / active_rms)).astype(np.float32)


def load_utterance(utt: Utterance) -> np.ndarray | None:
    """The utterance as trimmed, level-normalised mono float32 at 16 kHz; None when too short."""
    if utt.text:
        audio = _synthesise(utt)
    elif utt.path.endswith(".g722"):
        audio = _decode_g722(utt.path)
    else:
        try:
            audio = read_audio(utt.path)[0].mean(axis=0)
        except SekdError:  # a few of the game's files hold no samples
            return None
    return _trim_and_normalise(audio)
