"""Speech for the built-in corpus: the speakers, their split, and clean 16 kHz utterances.

Every recorded voice comes from a Debian package (``PACKAGES``, ``OOD_PACKAGES``); what
counts as one speaker is decided per source, conservatively: folders that may be the same
person are one speaker. Two kinds of real speaker, plus a labelled synthetic minority:

- ``studio`` (read speech):
  - the Asterisk telephony prompts: the core sounds (raw G.722 at 16 kHz; one speaker per
    voice folder, ``en_US_f_Allison`` and ``es_MX_f_Allison`` being one person) and the
    prompt packages of Paola Dal Zot (``it-menardi``, 8 kHz WAV), Armelle Desjardins
    (``fr-armelle``) and July E. Jiménez (``es-co``), both raw GSM 06.10 at 8 kHz;
  - KDE's ktuberling (spoken words) and klettres (letters and syllables): one speaker per
    program and language (``sr`` and its script variants are one folder of the same files,
    ``nb``/``nn`` and ``en``/``en_GB`` one speaker each, so the program's speakers of one
    language land in one split);
  - Tux Paint's spoken stamp descriptions (``*_desc_<lang>.ogg``) and, for the same
    languages, its spoken numbers and letters: one speaker per language (the changelog
    names one reader for most; French has two, counted as one).
- ``acted``: the Dutch and Czech voice-over of the game Fish Fillets. File names are
  ``<level>-<character>-<line>.ogg``; the heroes ``m`` (small fish) and ``v`` (big fish) are
  one speaker each per language. The minor characters are left out: their voices are close
  to both heroes' (speaker embeddings), so the dub's two actors likely voice them too.
- ``synthetic``: espeak-ng voices speaking the game's dialogue text (its lua files; the
  English voice files are never read) in ten languages; the voice variant is the speaker.

Speaker embeddings (a pretrained d-vector model, run once while choosing the sources;
Allison's two languages score 0.83, unrelated voices about 0.57) found one pair of folders
of different programs that is likely one person (``SAME_PERSON``, 0.96). Klettres' isolated
letters score 0.84-0.89 between languages that need native readers (Arabic, Hebrew,
Malayalam, Tswana): the clip style, not the voice, so they stay one speaker per language.

Short clips (single words) are kept down to ``MIN_UTTERANCE_S``: a mixture strings a
speaker's clips together with short pauses, so they become sequences of words.

Splits: valid and test are fixed tables of held-out speakers (``HELD_OUT``: real speakers
of both voice heights, studio and acted, plus three synthetic ones each); a held-out
language of the KDE and Tux Paint recordings is held out with all its speakers, as they
may be one person (and ktuberling's ``sl`` with its ``el``: 0.82). Every other speaker of
``PACKAGES`` is in train. The ``ood`` split's speakers come from ``OOD_PACKAGES`` alone,
which no other split uses: Hedgewars' character voice packs (the English packs are one
speaker, as one actor may voice several; one per other language) and the LibriVox
excerpts of pocketsphinx's test data.

Three sources are reserved for a check outside the corpus and are never read
(``RESERVED``): Fish Fillets' English voice files, the ALSA test prompts (alsa-utils) and
OpenTTD's sound effects (openttd-opensfx).
"""

from __future__ import annotations

import functools
import io
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import G722
import numpy as np
import soundfile as sf

from ..audio import SAMPLE_RATE, read_audio, resample
from ..errors import SekdError
from .debian import package_files

ASTERISK_LANGUAGES = ("en", "es", "fr", "it", "ru")
ASTERISK_PROMPTS = {  # package -> (speaker, language)
    "asterisk-prompt-it-menardi-wav": ("asterisk-menardi", "it"),
    "asterisk-prompt-fr-armelle": ("asterisk-armelle", "fr"),
    "asterisk-prompt-es-co": ("asterisk-july", "es"),
}
FILLETS_LANGUAGES = ("nl", "cs")
FILLETS_HEROES = {"m": "small", "v": "big"}
DIALOGUE_PACKAGE = "fillets-ng-data"
KDE_PACKAGES = {"ktuberling": "ktuberling-data", "klettres": "klettres-data"}
# Language folder -> the speaker's language: variants of one language are one speaker.
KDE_SAME_SPEAKER = {"sr@ijekavian": "sr", "sr@ijekavianlatin": "sr", "sr@latin": "sr", "nn": "nb", "en_GB": "en"}
KDE_SKIPPED = ("sr@ijekavian", "sr@ijekavianlatin", "sr@latin")  # copies of ``sr``'s files
TUXPAINT_PACKAGE = "tuxpaint-stamps-default"
TUXPAINT_LANGUAGES = ("be", "bg", "ca", "da", "el", "en", "es", "fr", "lt", "ml", "nl", "ro", "ru")  # with descriptions
# Speaker labels that are likely one person -> the one speaker they become.
SAME_PERSON = {"ktuberling-ru": "tuxpaint-be"}  # embeddings 0.955: Tux Paint's Belarusian reader, KDE's Russian words
HEDGEWARS_PACKAGE = "hedgewars-data"
# Hedgewars voice pack -> language; packs of one language are one speaker. Robot (processed) is left out.
HEDGEWARS_PACKS = {
    "British": "en", "Classic": "en", "Default": "en", "HillBilly": "en", "Mobster": "en", "Pirate": "en",
    "Singer": "en", "Surfer": "en", "Default_es": "es", "Default_pl": "pl", "Russian_pl": "pl",
    "Default_ru": "ru", "Russian": "ru", "Default_uk": "uk",
}
HEDGEWARS_NOT_SPEECH = re.compile(r"^(ooff|ow|jump|laugh|poison|firepunch|hmm)\d*$", re.IGNORECASE)  # grunts
POCKETSPHINX_PACKAGE = "pocketsphinx-testdata"

PACKAGES = (  # train, valid and test
    *(f"asterisk-core-sounds-{lang}-g722" for lang in ASTERISK_LANGUAGES),
    *ASTERISK_PROMPTS,
    *(f"fillets-ng-data-{lang}" for lang in FILLETS_LANGUAGES),
    *KDE_PACKAGES.values(),
    TUXPAINT_PACKAGE,
    DIALOGUE_PACKAGE,
    "espeak-ng",
)
OOD_PACKAGES = (HEDGEWARS_PACKAGE, POCKETSPHINX_PACKAGE)
RESERVED = ("fillets-ng-data: the English voice files", "alsa-utils", "openttd-opensfx")

# espeak-ng variant -> the languages that synthetic speaker talks in.
SYNTHETIC_SPEAKERS: dict[str, tuple[str, ...]] = {
    "m1": ("en", "de"), "m2": ("fr", "pl"), "m3": ("es", "ru"), "m6": ("it", "sv"),
    "m7": ("nl", "cs"), "m8": ("en", "pl"), "f1": ("de", "es"), "f2": ("en", "it"),
    "f3": ("ru", "fr"), "klatt": ("sv", "en"), "klatt4": ("cs", "de"),
    "m4": ("en", "de"), "f4": ("es", "it"), "klatt2": ("fr", "ru"),
    "m5": ("en", "fr"), "f5": ("de", "pl"), "klatt3": ("es", "nl"),
}
# Held-out speakers per split; every other speaker of PACKAGES is in train.
HELD_OUT = {
    "valid": ("asterisk-june", "fillets-cs-big", "tuxpaint-el", "ktuberling-el", "ktuberling-sl",  # el, sl: 0.82
              "espeak-m4", "espeak-f4", "espeak-klatt2"),
    "test": ("asterisk-carlo", "fillets-nl-small", "tuxpaint-lt", "ktuberling-lt", "klettres-lt", "ktuberling-gl",
             "espeak-m5", "espeak-f5", "espeak-klatt3"),
}
SPLITS = ("train", "valid", "test")  # the in-domain splits
OOD_SPLIT = "ood"

MIN_UTTERANCE_S = 0.3   # shorter clips (after trimming) are skipped: about one short word
LEVEL_DBFS = -25.0      # RMS of the active frames after normalisation
SILENCE_DB = 40.0       # frames this far below the loudest frame count as silence
ESPEAK_SPEED_WPM = (140, 190)
GSM_BYTES_PER_FRAME, GSM_SAMPLES_PER_FRAME, GSM_RATE = 33, 160, 8000


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
    """The split of ``speaker``: ood for the speakers of OOD_PACKAGES, else valid, test or train."""
    if speaker.startswith(("hedgewars-", "pocketsphinx-")):
        return OOD_SPLIT
    for split, speakers in HELD_OUT.items():
        if speaker in speakers:
            return split
    return "train"


def _audio(package: str, suffixes: tuple[str, ...] = (".ogg", ".wav")) -> list[Path]:
    return [p for p in package_files(package) if p.suffix.lower() in suffixes]


def _asterisk_core() -> list[Utterance]:
    folder = re.compile(r"^([a-z]{2})_[A-Z]{2}_[fm]_(\w+)$")  # e.g. fr_CA_f_June
    found = []
    for lang in ASTERISK_LANGUAGES:
        for path in _audio(f"asterisk-core-sounds-{lang}-g722", (".g722",)):
            voice = next((m for m in map(folder.match, path.parts) if m), None)
            if voice and "silence" not in path.parts:
                found.append(Utterance(f"asterisk-{voice.group(2).lower()}", "studio", voice.group(1), str(path)))
    return found


def _asterisk_prompts() -> list[Utterance]:
    return [Utterance(speaker, "studio", lang, str(path))
            for package, (speaker, lang) in ASTERISK_PROMPTS.items()
            for path in _audio(package, (".wav", ".gsm")) if "silence" not in path.parts]


def _fillets() -> list[Utterance]:
    found = []
    for lang in FILLETS_LANGUAGES:
        for path in _audio(f"fillets-ng-data-{lang}"):
            parts = path.stem.split("-")
            if path.parent.name == lang and len(parts) >= 3 and parts[1] in FILLETS_HEROES:
                found.append(Utterance(f"fillets-{lang}-{FILLETS_HEROES[parts[1]]}", "acted", lang, str(path)))
    return found


def _kde() -> list[Utterance]:
    """ktuberling: ``sounds/<lang>/<word>.{ogg,wav,opus}``; klettres: ``klettres/<lang>/{alpha,syllab}/<x>.ogg``."""
    found = []
    for program, package in KDE_PACKAGES.items():
        for path in _audio(package, (".ogg", ".wav", ".opus")):
            if program == "klettres" and path.parent.name not in ("alpha", "syllab"):
                continue
            folder = path.parent.name if program == "ktuberling" else path.parent.parent.name
            if folder in KDE_SKIPPED:
                continue
            lang = KDE_SAME_SPEAKER.get(folder, folder)
            speaker = f"{program}-{lang}"
            found.append(Utterance(SAME_PERSON.get(speaker, speaker), "studio", lang.split("_")[0], str(path)))
    return found


def _tuxpaint() -> list[Utterance]:
    """Descriptions ``<stamp>_desc[_<lang>].ogg`` (no language: English), and the spoken numbers and letters
    ``<stamp>_<lang>.ogg`` of the languages that have descriptions (counted as the same speaker)."""
    found = []
    for path in _audio(TUXPAINT_PACKAGE, (".ogg",)):
        description = re.search(r"_desc(?:_([a-z]{2})(?:_[A-Z]{2})?)?$", path.stem)
        spoken = re.search(r"_([a-z]{2})(?:_[A-Z]{2})?$", path.stem)
        lang = (description.group(1) or "en") if description else spoken.group(1) if spoken else ""
        if lang in TUXPAINT_LANGUAGES:
            found.append(Utterance(f"tuxpaint-{lang}", "studio", lang, str(path)))
    return found


def _hedgewars() -> list[Utterance]:
    found = []
    for path in _audio(HEDGEWARS_PACKAGE, (".ogg",)):
        pack = path.parent.name
        speech = path.parent.parent.name == "voices" and not HEDGEWARS_NOT_SPEECH.match(path.stem)
        if speech and pack in HEDGEWARS_PACKS:
            found.append(Utterance(f"hedgewars-{HEDGEWARS_PACKS[pack]}", "acted", HEDGEWARS_PACKS[pack], str(path)))
    return found


def _pocketsphinx() -> list[Utterance]:
    """The LibriVox excerpts (one reader of *Sense and Sensibility*)."""
    return [Utterance("pocketsphinx-librivox", "studio", "en", str(path))
            for path in _audio(POCKETSPHINX_PACKAGE, (".wav",)) if path.parent.name == "librivox"]


RECORDED: tuple[Callable[[], list[Utterance]], ...] = (_asterisk_core, _asterisk_prompts, _fillets, _kde, _tuxpaint,
                                                       _hedgewars, _pocketsphinx)


@functools.cache
def recorded_utterances() -> tuple[Utterance, ...]:
    """Every recorded utterance of every split, in a fixed order."""
    return tuple(sorted((utt for lister in RECORDED for utt in lister()), key=lambda u: (u.speaker, u.path)))


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


def select_utterances(split: str, rng: np.random.Generator, per_recorded_voice: int | None,
                      per_synthetic_voice: int) -> list[Utterance]:
    """The utterances of ``split``'s speakers: per voice (speaker, language), a random subset
    (``None``: all of its recordings). The ood split has no synthetic speakers.

    Synthetic sentences get a random speaking rate each.
    """
    voices: dict[tuple[str, str], list[Utterance]] = {}
    for utt in recorded_utterances():
        if speaker_split(utt.speaker) == split:
            voices.setdefault((utt.speaker, utt.language), []).append(utt)
    chosen: list[Utterance] = []
    for key in sorted(voices):
        pool = voices[key]
        if per_recorded_voice is None:
            chosen += pool
            continue
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


def _decode_gsm(path: str) -> np.ndarray:
    """Raw GSM 06.10 frames (Asterisk's ``.gsm``) at 8 kHz, resampled to 16 kHz."""
    frames = Path(path).stat().st_size // GSM_BYTES_PER_FRAME * GSM_SAMPLES_PER_FRAME
    with sf.SoundFile(path, format="RAW", subtype="GSM610", samplerate=GSM_RATE, channels=1) as fh:
        audio = fh.read(frames, dtype="float32")
    return resample(audio[None], GSM_RATE, SAMPLE_RATE)[0]


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
    """The utterance as trimmed, level-normalised mono float32 at 16 kHz; None when too short or unreadable."""
    if utt.text:
        audio = _synthesise(utt)
    elif utt.path.endswith(".g722"):
        audio = _decode_g722(utt.path)
    elif utt.path.endswith(".gsm"):
        audio = _decode_gsm(utt.path)
    else:
        try:
            audio = read_audio(utt.path)[0].mean(axis=0)
        except SekdError:  # a few of the game's files hold no samples
            return None
    return _trim_and_normalise(audio)
