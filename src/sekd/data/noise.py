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
files one after another with random gaps and gains. A file matched by two families belongs
to the first, and a file whose content an earlier one has is left out (no copy can cross
the splits); a family keeps at most MAX_FILES_PER_FAMILY files and each file its first
MAX_FILE_S seconds, so loading a split stays quick. The survey behind the families, with
files and hours per split, is in docs (the corpus page).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf

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


def _files(folder: str, *stems: str) -> str:
    """A pattern for the files in ``folder`` (a pattern ending a path) whose names start with one of ``stems``."""
    return rf"{folder}/(?:{'|'.join(stems)})[^/]*$"


_S3D = r"/scorched3d/data/globalmods/(?:none|apoc)/data/wav"
_BTANKS = "/btanks/data/sounds"
_LINCITY = "/lincity-ng/sounds"
_MINETEST = "/minetest_game/mods/[a-z_]+/sounds"
_STAMPS = "/tuxpaint/stamps"
_WORDWARVI = "/wordwarvi/sounds"
_FREECIV = "/freeciv/stdsounds"
_WIDELANDS = "/widelands/data/sound"
_WESNOTH = "/wesnoth/1.16/data/core/sounds"
# Spoken words are never noise, whichever family's pattern matches them: tuxpaint's spoken names and
# descriptions (<stamp>_desc*.ogg, <stamp>_<locale>.ogg), freedesktop's channel names, heroes' shouts.
SPOKEN_FILES = (r"/tuxpaint/stamps/.*(?:_desc|_[a-zA-Z]{2}(?:_[a-zA-Z]{2,4})?\.ogg$)|/audio-channel-"
                r"|/heroes/sfx/(?:go|no|oh|stop|ho_yeh)\.wav$")

# A file matched by several families belongs to the first of them (and a file with the content of an
# earlier one is left out), so the order matters: specific families come before broad ones.
FAMILY_SPECS: dict[str, Family] = {
    # --- in domain (train, valid, test) ---
    "sirens-alarms": Family("vehicles", "police and fire-engine sirens, klaxons, alarm bells and clocks", (
        ("scorched3d-data", _files(f"{_S3D}/misc", "firetruck", "policecar")),
        ("btanks-data", _files(_BTANKS, "klaxon")),
        ("wordwarvi-sound", _files(_WORDWARVI, "missile_alarm")),
        ("heroes-sound-effects", _files("/heroes/sfx", "claxon", "clock")),
        ("sound-theme-freedesktop", _files("/freedesktop/stereo", "alarm-clock")),
        ("lincity-ng-data", _files(_LINCITY, "FireStation")),
        ("tuxpaint-stamps-default", _files(f"{_STAMPS}/vehicles/emergency", "firetruck")),
    ), events=True),
    "road-vehicles": Family("vehicles", "car horns, engines starting and driving, tanks and trains", (
        ("scorched3d-data", _files(f"{_S3D}/misc", "carhorn")),
        ("scorched3d-data", _files(f"{_S3D}/movement", "tankmove", "movement")),
        ("btanks-data", _files(_BTANKS, "engine-", "tank-move", "vehicle-sound", "train", "submarine")),
        ("freeciv-data", _files(_FREECIV, "Tread", "THover")),
        ("wordwarvi-sound", _files(_WORDWARVI, "toyota_celica")),
    ), events=True),
    "traffic": Family("traffic", "road and rail traffic of a town, street ambience", (
        ("lincity-ng-data", _files(_LINCITY, "Trafic", "DirtTrack", "RailTrain")),
        ("scorched3d-data", _files(f"{_S3D}/misc", "citysounds")),
    ), stationary=True),
    "aircraft": Family("vehicles", "propeller planes, jets, helicopters and rockets flying past or taking off", (
        ("scorched3d-data", _files(f"{_S3D}/misc", "cessna", "helicopter", "apache", "f16", "f18", "jet", "t38",
                                   "rocket")),
        ("btanks-data", _files(_BTANKS, "helicopter")),
        ("wordwarvi-sound", _files(_WORDWARVI, "jetwash", "rocket_exhaust")),
        ("lincity-ng-data", _files(_LINCITY, "RocketTakeoff", r"Rocket\d")),
    ), stationary=True),
    "explosions": Family("weapons", "explosions, bombs and demolitions", (
        ("scorched3d-data", _files(f"{_S3D}/explosions", "large", "medium", "small", "xlarge", "napalm", "tank",
                                   "exp", "shockwave", "meteor", "quake", "dirt", "crunch")),
        ("btanks-data", _files(_BTANKS, "building-explosion", "explosion", "vehicle-explosion", "nuke-explosion",
                               "old-nuke-explosion", "dirt-bullet-explosion")),
        ("wordwarvi-sound", _files(_WORDWARVI, "big_explosion", "bombexplosion", "missile_explosion",
                                   "volcano_eruption")),
        ("freeciv-data", _files(_FREECIV, "LrgExpl", "SmlExpl")),
        ("minetest-data", _files(_MINETEST, "tnt_explode")),
        ("lincity-ng-data", _files(_LINCITY, "RocketExplosion", "Raze")),
    ), events=True),
    "gunfire": Family("weapons", "guns, cannons, mortars and missile launches", (
        ("scorched3d-data", _files(f"{_S3D}/shoot", "")),
        ("btanks-data", _files(_BTANKS, "cannon", "shot", "machinegunner", "dumb-missile", "guided-missile",
                               "smoke-missile", "stun-missile", "nuke-missile", "boomerang-missile")),
        ("freeciv-data", _files(_FREECIV, "LrgCan", "MedCan", "MgBar", "MgHeavy", "Mortar")),
        ("wordwarvi-sound", _files(_WORDWARVI, "flak_gun", "flak_hit", "missile_launch", "gunwheel")),
    ), events=True),
    "farm-animals": Family("animals", "cows, sheep, goats, pigs, horses, donkeys, dogs, hens and roosters", (
        ("tuxpaint-stamps-default", _files(f"{_STAMPS}/animals/mammals/(?:bovines|equines|dogs|camel)", "")),
        ("tuxpaint-stamps-default", _files(f"{_STAMPS}/animals/mammals", "pig")),
        ("tuxpaint-stamps-default", _files(f"{_STAMPS}/animals/birds", "hen", "rooster", "turkey", "duck",
                                           "drake", "gander")),
        ("scorched3d-data", _files(f"{_S3D}/misc", "cows", "moo", "rooster", "sheep", "dog")),
        ("btanks-data", _files(_BTANKS, "cow")),
    ), events=True),
    "wild-animals": Family("animals", "calls of wild mammals: apes, big cats, bears, deer, whales, wolves, bats", (
        ("tuxpaint-stamps-default", _files(f"{_STAMPS}/animals/(?:mammals(?:/[a-z]+)?|marsupials|lizards)", "")),
        ("scorched3d-data", _files(f"{_S3D}/misc", "wolf", "bats")),
    ), events=True),
    "birds": Family("animals", "bird songs and calls, gulls, a dawn chorus", (
        ("tuxpaint-stamps-default", _files(f"{_STAMPS}/animals/birds", "")),
        ("scorched3d-data", _files(f"{_S3D}/misc", "birdchirp", "gull", "birds")),
    ), events=True),
    "insects-frogs": Family("animals", "bees, mosquitoes, grasshoppers, croaking frogs", (
        ("tuxpaint-stamps-default", _files(f"{_STAMPS}/animals/(?:insects|amphibians)", "")),
        ("scorched3d-data", _files(f"{_S3D}/misc", "frogs")),
        ("scorched3d-data", _files(f"{_S3D}/explosions", "bees")),
    )),
    "crowd": Family("crowd", "cheering, booing and applauding crowds, a busy market", (
        ("tuxfootball", _files("/tuxfootball/sound", "crowd", "ingame")),
        ("scorched3d-data", _files(f"{_S3D}/misc", "cheeringloop")),
        ("heroes-sound-effects", _files("/heroes/sfx", "foule")),
        ("frozen-bubble-data", _files("/frozen-bubble/snd", "applause")),
        ("lincity-ng-data", _files(_LINCITY, "SportsCroud", "MarketFull", "MarketMed")),
    )),
    "sports": Family("sports", "referee whistles, kicks and bouncing balls", (
        ("tuxfootball", _files("/tuxfootball/sound", "refwhistle", "kick", "bounce")),
    ), events=True),
    "screams-laughter": Family("human", "screams, laughter, groans and snoring (no words)", (
        ("scorched3d-data", _files(f"{_S3D}/misc", "scream")),
        ("btanks-data", _files(_BTANKS, "laugh", "kamikaze-scream", "deadman", "zombie")),
        ("wordwarvi-sound", _files(_WORDWARVI, "fallingscream", "ooooof")),
        ("frozen-bubble-data", _files("/frozen-bubble/snd", "snore")),
    ), events=True),
    "city-ambience": Family("city", "life in town districts: houses, schools, shops, harbour, parks", (
        ("lincity-ng-data", _files(_LINCITY, "Residential", "Commune", "Shanty", "School", "University", "Health",
                                   "MarketEmpty", "MarketLow", "Monument", "Harbor", "Pottery", "Farm",
                                   "OrganicFarm")),
        ("btanks-data", _files(f"{_BTANKS}/ambient", "city")),
    )),
    "industry-machines": Family("machines", "factories, mines, mills, power plants, recycling, a forge", (
        ("lincity-ng-data", _files(_LINCITY, "Industry", "CoalMine", "OreMine", "Mill", "WindMill", "PowerCoal",
                                   "PowerSolar", "PowerLine", "Substation", "Recycle", "Tip", "Blacksmith", "Build",
                                   "Water")),
        ("scorched3d-data", _files(f"{_S3D}/misc", "factoryloop", "nuclearloop")),
        ("minetest-data", _files(_MINETEST, "default_furnace")),
    ), stationary=True),
    "nature-ambience": Family("nature", "countryside, forest, swamp and park ambiences, a dawn chorus", (
        ("btanks-data", _files(f"{_BTANKS}/ambient", "country", "forest", "swamp")),
        ("scorched3d-data", _files(f"{_S3D}/misc", r"birds\d")),
        ("lincity-ng-data", _files(_LINCITY, "Green", "Parkland")),
    ), stationary=True),
    "rain-thunder": Family("weather", "rain, thunder claps and lightning strikes", (
        ("scorched3d-data", _files(f"{_S3D}/misc", "rain", "thunder")),
        ("scorched3d-data", _files(f"{_S3D}/explosions", "thunder", "lightning")),
        ("tuxpaint-stamps-default", _files(f"{_STAMPS}/naturalforces", "lightningbolt")),
    )),
    "water": Family("water", "streams, waves, splashes and bubbling water", (
        ("minetest-data", _files(_MINETEST, "env_sounds_water", "default_water_footstep")),
        ("scorched3d-data", _files(f"{_S3D}/misc", "oceanwaves", "splash")),
        ("freeciv-data", _files(_FREECIV, "Splash", "inh2o")),
    )),
    "fire": Family("fire", "crackling fires, bubbling lava, flames being put out", (
        ("minetest-data", _files(_MINETEST, "fire_", "env_sounds_lava", "default_cool_lava")),
        ("btanks-data", _files(_BTANKS, "fire")),
        ("scorched3d-data", _files(f"{_S3D}/misc", "lava")),
        ("lincity-ng-data", _files(_LINCITY, "Fire")),
    ), stationary=True),
    "footsteps": Family("footsteps", "steps on grass, gravel, sand, snow, ice, wood, metal and stone", (
        ("minetest-data", _files(_MINETEST, r"default_\w+_footstep")),
        ("btanks-data", _files(_BTANKS, "man-steps")),
    ), events=True),
    "digging-sliding": Family("surfaces", "digging, placing blocks, sliding over snow, ice, mud, leaves and rock", (
        ("minetest-data", _files(_MINETEST, "default_dig", "default_dug", "default_place", "default_gravel",
                                 "default_ice_d")),
        ("extremetuxracer-data", _files("/etr/sounds", r"\w+_slide", "tree_hit")),
    ), events=True),
    "doors-impacts": Family("impacts", "doors and chests, breaking glass and wood, metal and stone bangs", (
        ("minetest-data", _files(_MINETEST, "doors_", "xpanes_", "default_chest", "default_break_glass",
                                 "default_tool_breaks", "carts_")),
        ("freeciv-data", _files(_FREECIV, "wall", "woodbrk", "metbrk")),
        ("wordwarvi-sound", _files(_WORDWARVI, "metalbang", "stonebang", "clang", "bodyslam", "new_ground_smack")),
        ("lincity-ng-data", _files(_LINCITY, "Window")),
    ), events=True),
    "household": Family("household", "appliances, dishes, scissors, tools, a typewriter, coins", (
        ("tuxpaint-stamps-default", _files(f"{_STAMPS}/household(?:/[a-z]+)?", "")),
        ("tuxpaint-stamps-default", _files(f"{_STAMPS}/hobbies", "camera")),
        ("frozen-bubble-data", _files("/frozen-bubble/snd", "typewriter")),
        ("wordwarvi-sound", _files(_WORDWARVI, "us_quarter")),
    ), events=True),
    "instruments": Family("music", "single notes and phrases of cello, violin, bassoon, drums and cymbals", (
        ("tuxpaint-stamps-default", _files(f"{_STAMPS}/hobbies/music/[a-z]+", "")),
    ), events=True),
    "music-loops": Family("music", "drum, guitar, bass and ambient loops and pads", (
        ("sonic-pi-samples", _files("/samples", "loop_", "ambi_", "bass_", "guit_")),
    )),
    "drums": Family("music", "single drum, percussion and tabla hits", (
        ("sonic-pi-samples", _files("/samples", "bd_", "sn_", "drum_", "perc_", "tabla_")),
    ), events=True),
    "music-on-hold": Family("music", "full music tracks at 8 kHz (telephone music on hold)", (
        ("asterisk-moh-opsound-wav", _files("/asterisk/moh", "")),
    )),
    "game-music": Family("music", "game soundtracks: rock, electronic, orchestral, jingles", (
        ("btanks-data", _files("/btanks/data/tunes", "")),
        ("wordwarvi-sound", _files(_WORDWARVI, "destiny_facedown", "dtox3", "highscoremusic", "lucky")),
        ("frozen-bubble-data", _files("/frozen-bubble/snd", r"\w*zik")),
        ("lincity-ng-data", _files("/lincity-ng/music/default", "")),
        ("extremetuxracer-data", _files("/etr/music", "")),
        ("tuxfootball", _files("/tuxfootball/sound", "titlemusic")),
        ("freeciv-data", _files("/freeciv/stdmusic", "")),
    )),
    "ringtones": Family("phone", "phone ringtones and notification tunes", (
        ("lomiri-sounds", _files("/sounds/lomiri/(?:ringtones|notifications)", "")),
        ("oxygen-sounds", _files("/sounds", "Oxygen-Im-Phone-Ring", "Oxygen-Im-Sms")),
    )),
    "ui-sounds": Family("ui", "desktop and chat beeps, chimes, log-in and error sounds", (
        ("sound-theme-freedesktop", _files("/freedesktop/stereo", "")),
        ("oxygen-sounds", _files("/sounds", "Oxygen-")),
        ("yaru-theme-sound", _files("/Yaru/stereo", "")),
        ("deepin-sound-theme", _files("/deepin/stereo", "")),
        ("lomiri-sounds", _files("/sounds/lomiri/camera/[a-z]+", "")),
    ), exclude="audio-test-signal", events=True),
    "arcade-sfx": Family("sfx", "game effects: pick-ups, power-ups, teleports, lasers, shields", (
        ("heroes-sound-effects", _files("/heroes/sfx", "")),
        ("btanks-data", _files(_BTANKS, "taking-item", "respawn", "teleport", "mine-tick", "old-mine-tick",
                               "boomerang-hit", "disembark", "dispersion", "slime", "worm")),
        ("scorched3d-data", _files(f"{_S3D}/shield", "")),
        ("scorched3d-data", _files(f"{_S3D}/misc", "beamup", "teleport", "laserdeath", "extralife", "lockon",
                                   "riftcollapse", "para", "beep")),
        ("wordwarvi-sound", _files(_WORDWARVI, "synthetic_", "zzzt", "tesla_tower", "timpani_boing",
                                   "gravity_bomb")),
        ("frozen-bubble-data", _files("/frozen-bubble/snd", "destroy_group", "launch", "rebound", "stick", "lose",
                                      "malus", "newroot", "hurry", "noh", "pause", "cancel", "menu_")),
    ), events=True),
    "electronic-sfx": Family("sfx", "electronic blips, glitches, vinyl crackle and scratches", (
        ("sonic-pi-samples", _files("/samples", "elec_", "glitch_", "mehackit_", "vinyl_", "misc_")),
    ), events=True),
    # --- out of domain (split ood only): packages used by no family above ---
    "ood-workshop": Family("machines", "saws, hammers, a smithy, stone cutting, wood chopping, mills, looms", (
        ("widelands-data", _files(f"{_WIDELANDS}/(?:atlanteans/(?:cutting|saw)|hammering|smiths|stonecutting|"
                                  "woodcutting|sawmill|mill|metal|other)", "")),
        ("widelands-data", _files(f"{_WIDELANDS}/barbarians", "blackwood", "mortar", "stonegrind", "weaver")),
        ("widelands-data", _files(f"{_WIDELANDS}/farm", "scythe")),
    ), events=True),
    "ood-wildlife": Family("animals", "birds, wolves, coyotes, moose, stags, crickets, frogs, farm animals, ducks", (
        ("widelands-data", _files(f"{_WIDELANDS}/(?:animals|farm)", "")),
        ("widelands-data", _files("/widelands/data/world/critters/[a-z]+", "")),
    ), exclude="scythe", events=True),
    "ood-melee": Family("weapons", "swords, axes, maces, spears, bows, slings and throwing knives, hits and misses", (
        ("wesnoth-1.16-data", _files(_WESNOTH, "axe", "bow", "club", "crossbow", "dagger", "dart", "flail", "hatchet",
                                     "knife", "mace", "sling", "spear", "staff", "sword", "throw", "fist", "claws",
                                     "bite", "pincers", "tail", "net", "torch", "miss")),
    ), events=True),
    "ood-creatures": Family("animals", "growls, hisses, shrieks, groans and death cries of people and beasts, "
                            "galloping horses", (
        ("wesnoth-1.16-data", _files(_WESNOTH, r"[a-z-]+-(?:die|hit)", "groan", "wail", "ugg", "hiss",
                                     "gryphon-shriek", "wolf-growl", "dwarf-laugh", "horse-canter",
                                     "horse-elf-canter")),
    ), events=True),
    "ood-ambience": Family("nature", "birds at dawn, a campfire, night, a ship at sea, war drums, horn signals, "
                           "rumbling caves", (
        ("wesnoth-1.16-data", _files(f"{_WESNOTH}/(?:ambient|horn-signals)", "")),
        ("wesnoth-1.16-data", _files(_WESNOTH, "cave-in", "rumble")),
    )),
    "ood-game-music": Family("music", "a strategy game's orchestral and folk soundtrack", (
        ("widelands-data", _files("/widelands/data/music", "")),
    )),
}
OOD_FAMILY_NAMES = tuple(name for name in FAMILY_SPECS if name.startswith("ood-"))  # the ood split only

GENERATED_TYPES = ("babble", "white", "pink", "brown", "hum", "transient")
STATIONARY_GENERATED = frozenset({"white", "pink", "brown", "hum"})
# Shares of the mixtures. The recorded families carry 65 %, equally (about 2 % each of the 32 in-domain
# ones): unfamiliar real noise is what models trained on the older corpus failed on. Babble keeps 13 %
# (the commonest real interference, and the only one like speech); white/pink/brown/hum 16 %, which with
# the five stationary recorded families (10 %) keeps a quarter of the mixtures stationary; transient 6 %.
RECORDED_SHARE = 0.65
GENERATED_SHARES = {"babble": 0.13, "white": 0.04, "pink": 0.04, "brown": 0.03, "hum": 0.05, "transient": 0.06}

COLOUR_EXPONENTS = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power spectrum ~ 1 / f**exponent
BABBLE_TALKERS = (3, 6)
EVENT_GAP_S = (0.05, 0.8)      # silence between two events of an event family
EVENT_GAIN_DB = (-6.0, 6.0)
MIN_LOOP_S = 1.0               # a looped family's clip shorter than this is played as events instead
MAX_FILES_PER_FAMILY = 150     # larger families keep every k-th file in name order (loading time, memory)
MAX_FILE_S = 60.0              # longer files are cut to their first minute when loaded (memory)
SPLIT_SHARES = {"train": 0.6, "test": 0.2, "valid": 0.2}  # of each in-domain family's files (by weight)
SPLIT_WEIGHT_CAP_S = 10.0


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


def split_files(seconds: Mapping[Path, float]) -> dict[str, list[Path]]:
    """One in-domain family's files (with their durations) over train, valid and test.

    Variants of one sound stay in one split: the groups of variants, heaviest first (then by
    name), each go to the split furthest below its share (``SPLIT_SHARES``) of the family's
    weight. A file weighs its duration up to SPLIT_WEIGHT_CAP_S: a long ambience adds length
    but not much variety, and must not leave the other splits all the short sounds. A family
    of fewer than three groups splits its files round-robin by name instead (train, test,
    valid, train, train, ...).
    """
    paths = sorted(seconds)
    groups: dict[str, list[Path]] = {}
    for path in paths:
        groups.setdefault(_variant_group(path), []).append(path)
    out: dict[str, list[Path]] = {split: [] for split in SPLIT_SHARES}
    if len(groups) < len(SPLIT_SHARES):
        for rank, path in enumerate(paths):
            out[{1: "test", 2: "valid"}.get(rank % 5, "train")].append(path)
        return out
    assigned = dict.fromkeys(SPLIT_SHARES, 0.0)
    weight = {name: sum(min(seconds[p], SPLIT_WEIGHT_CAP_S) for p in members) for name, members in groups.items()}
    for name in sorted(groups, key=lambda name: (-weight[name], name)):
        split = min(SPLIT_SHARES, key=lambda s: assigned[s] / SPLIT_SHARES[s])  # ties: the table's order
        out[split] += groups[name]
        assigned[split] += weight[name]
    return {split: sorted(files) for split, files in out.items()}


def _seconds(path: Path) -> float:
    """A file's duration from its header."""
    try:
        return float(sf.info(str(path)).duration)
    except Exception as exc:  # soundfile raises several types; all mean "not audio we can read"
        raise SekdError(f"{path}: cannot read audio ({exc})") from None


def _installed_files(package: str) -> list[Path]:
    return [p for p in package_files(package) if p.suffix.lower() in AUDIO_SUFFIXES]


def _matches(spec: Family, pattern: str, path: Path) -> bool:
    text = str(path)
    return (bool(re.search(pattern, text)) and not re.search(SPOKEN_FILES, text)
            and not (spec.exclude and re.search(spec.exclude, text)))


@lru_cache(maxsize=1)
def _family_listing() -> dict[str, tuple[Path, ...]]:
    """Every family's files: each file and each content in one family only (the first that matches), capped.

    A family of more than MAX_FILES_PER_FAMILY files keeps every k-th in name order.
    Identical copies (the same sound in two folders or packages) would cross the splits, so
    only the first path of each content is kept, in-domain families before the ood ones.
    """
    installed = {package: _installed_files(package) for package in (*PACKAGES, *OOD_PACKAGES)}
    claimed: set[Path] = set()
    contents: set[bytes] = set()
    listing: dict[str, tuple[Path, ...]] = {}
    for name, spec in FAMILY_SPECS.items():
        files = []
        for path in sorted({p for package, pattern in spec.sources for p in installed[package]
                            if _matches(spec, pattern, p)}):
            digest = hashlib.blake2b(path.read_bytes(), digest_size=16).digest()
            if path not in claimed and digest not in contents:
                files.append(path)
                claimed.add(path)
                contents.add(digest)
        step = -(-len(files) // MAX_FILES_PER_FAMILY)
        listing[name] = tuple(files[::step] if step > 1 else files)
    return listing


@lru_cache(maxsize=1)
def _durations() -> dict[Path, float]:
    return {path: _seconds(path) for name in IN_DOMAIN_FAMILIES for path in _family_listing()[name]}


def family_files(name: str) -> list[Path]:
    """All files of family ``name`` over its splits, sorted (see :func:`_family_listing`)."""
    return list(_family_listing()[name])


def noise_files(split: str) -> dict[str, list[Path]]:
    """The recorded noise files of ``split`` (train, valid, test or ood) per family name.

    Every family of the split is a key, even one without files in it.
    """
    if split not in SPLITS:
        raise SekdError(f"unknown noise split {split!r}; expected one of {', '.join(SPLITS)}")
    if split == "ood":
        return {name: family_files(name) for name in OOD_FAMILY_NAMES}
    durations = _durations()
    return {name: split_files({p: durations[p] for p in family_files(name)})[split] for name in IN_DOMAIN_FAMILIES}


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
    clip = None if FAMILY_SPECS[kind].events else clips[rng.integers(len(clips))]
    if clip is None or len(clip) < MIN_LOOP_S * SAMPLE_RATE:  # a very short clip in a loop would buzz
        return fill(clips, n, rng, gap_s=EVENT_GAP_S, gain_db=EVENT_GAIN_DB)
    return loop_to_length(clip, n, rng)
