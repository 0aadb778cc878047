"""Corpus layouts: recognise a data folder, list its (noisy, clean) pairs per split, and check it.

Layouts, in the order :func:`scan` tries them:

- ``manifest``: a CSV with columns ``id, noisy, clean`` (and ``split``), or a folder holding
  ``manifest.csv`` (the built-in corpus). Splits: the ``split`` column.
- ``l3das23``: L3DAS23 Task 1 as the challenge ships it (and as ``sekd data build --layout
  l3das23`` writes it): folders ``L3DAS23_Task1_{train100,train360,dev,test}`` (the root
  holding them, or one of them), each with ``data/<id>_A.wav``, ``data/<id>_B.wav`` (4
  Ambisonics channels each) and ``labels/<id>.wav`` (mono dry speech). Splits ``train``
  (train100 + train360), ``valid`` (dev), ``test`` (test, or dev when there is no test
  folder); the folder names ``train100`` ... also work. A pair's input is mic A; mic B's
  channels follow when the model takes 8 channels (``model.in_channels``: 4 or 8).
- ``voicebank``: VoiceBank-DEMAND: ``{noisy,clean}_testset_wav`` and
  ``{noisy,clean}_trainset_{28,56}spk_wav``, same file names. Splits ``train`` (trainset
  without speakers p226 and p287), ``valid`` (those two, the usual held-out speakers),
  ``test`` (testset).
- ``dns``: the DNS Challenge: ``noisy/`` and ``clean/`` whose files are matched by the
  ``fileid_<N>`` that ends their names (the synthetic test sets and generated training
  data), or such folders under ``<split>/``.
- ``paired``: ``noisy/`` and ``clean/`` with the same relative file names, or under ``<split>/``.

Pools for on-the-fly mixing (``data.mixing: online``, mixing.py), which :func:`scan_pools`
recognises in this order:

- ``pools``: a built corpus's ``OUT/pools/`` (given as ``OUT`` or ``OUT/pools``), or a user's
  folder with ``clean/`` and ``noise/`` and optionally ``rir/`` (or ``impulse_responses/``);
- ``dns-download-fullband``: the DNS Challenge download as it is (ICASSP 2022 on):
  ``datasets_fullband/{clean_fullband,noise_fullband,impulse_responses}`` (the root holding
  ``datasets_fullband``, or that folder);
- ``dns-download``: the 16 kHz download of the earlier challenges:
  ``datasets/{clean,noise,impulse_responses}``.

Every audio file under a pool's folder belongs to it, at any depth, except files named
``*noise*`` in an RIR folder (the noise recordings that RIR packages such as SLR28 ship).

A flat folder (no split folders) gives all its pairs for any split. Problems found while
listing (a noisy file without its target, a target without its input) are kept with the
file's name: loading refuses the pairs of a split that has any, ``sekd data check``
reports them all, together with what it finds reading every file's header.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

from ..audio import AUDIO_SUFFIXES
from ..errors import SekdError
from .checks import check_pairs, check_pools
from .pairs import Pair
from .pools import POOL_NAMES, PoolFile, Pools

L3DAS23_PREFIX = "L3DAS23_Task1_"
L3DAS23_SPLITS = {"train": ("train100", "train360"), "valid": ("dev",), "test": ("test",)}
L3DAS23_CHANNELS = 4  # per microphone
VOICEBANK_VALID_SPEAKERS = ("p226", "p287")
DNS_FILEID = re.compile(r"fileid_(\d+)$")
RIR_FOLDERS = ("rir", "impulse_responses")
DNS_DOWNLOADS = {  # pool layout -> (its folder in the download's root, the folder of each pool in it)
    "dns-download-fullband": ("datasets_fullband", {"clean": "clean_fullband", "noise": "noise_fullband",
                                                    "rir": "impulse_responses"}),
    "dns-download": ("datasets", {"clean": "clean", "noise": "noise", "rir": "impulse_responses"}),
}


@dataclass
class Corpus:
    """The pairs of a data folder per split (its own split names), and the problems found listing them."""

    layout: str
    root: Path
    splits: dict[str, list[Pair]]
    problems: dict[str, list[str]] = field(default_factory=dict)  # split -> "file: problem" lines
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)  # train/valid/test -> own split names
    flat: bool = False  # one set of pairs, served for any split

    def pairs(self, split: str | None) -> list[Pair]:
        """The pairs of ``split`` (None: all); raises on the first listing problem of those splits."""
        if self.flat or split is None:
            names = list(self.splits)
        elif split in self.splits:
            names = [split]
        else:
            names = [name for name in self.aliases.get(split, ()) if name in self.splits]
        if not names:
            raise SekdError(f"{self.root}: no mixtures in split {split!r} (this {self.layout} corpus has: "
                            f"{', '.join(self.splits) or 'nothing'})")
        problems = [line for name in names for line in self.problems.get(name, [])]
        if problems:
            raise SekdError(problems[0] + (f" (and {len(problems) - 1} more; run 'sekd data check {self.root}')"
                                           if len(problems) > 1 else ""))
        pairs = [pair for name in names for pair in self.splits[name]]
        if not pairs:
            raise SekdError(f"{self.root}: no mixtures in split {split!r}")
        return pairs


def _audio_files(folder: Path) -> dict[str, Path]:
    """Audio files under ``folder`` by relative path (POSIX), sorted."""
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*"))
            if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()}


def _match(noisy_dir: Path, clean_dir: Path, key: Callable[[str], str | None]) -> tuple[list[Pair], list[str]]:
    """Pairs of the files of two folders with equal ``key(relative name)``; the id is the noisy key.

    Problems: a file whose key is None (it does not follow the layout's naming), a key
    held by two files, a noisy file without a clean one and a clean file without a noisy one.
    """
    problems: list[str] = []
    keyed: list[dict[str, Path]] = []
    for folder in (noisy_dir, clean_dir):
        files: dict[str, Path] = {}
        for name, path in _audio_files(folder).items():
            k = key(name)
            if k is None:
                problems.append(f"{path}: the name does not follow the layout")
            elif k in files:
                problems.append(f"{path}: the same pair key {k!r} as {files[k]}")
            else:
                files[k] = path
        keyed.append(files)
    noisy, clean = keyed
    if not noisy:
        problems.insert(0, f"{noisy_dir}: no audio files")
    problems += [f"{noisy[k]}: no matching clean file in {clean_dir}" for k in noisy if k not in clean]
    problems += [f"{clean[k]}: no matching noisy file in {noisy_dir}" for k in clean if k not in noisy]
    return [Pair(k, noisy[k], clean[k]) for k in noisy if k in clean], problems


def _same_name(name: str) -> str:
    return name.rsplit(".", 1)[0]


def _dns_key(name: str) -> str | None:
    m = DNS_FILEID.search(_same_name(name))
    return f"fileid_{m.group(1)}" if m else None


def _folder_pairs(layout: str, root: Path, key: Callable[[str], str | None]) -> Corpus:
    if (root / "noisy").is_dir():
        pairs, problems = _match(root / "noisy", root / "clean", key)
        return Corpus(layout, root, {"all": pairs}, {"all": problems}, flat=True)
    splits, problems = {}, {}
    for sub in sorted(p for p in root.iterdir() if (p / "noisy").is_dir()):
        splits[sub.name], problems[sub.name] = _match(sub / "noisy", sub / "clean", key)
    return Corpus(layout, root, splits, problems)


def _manifest(path: Path) -> Corpus:
    root = path.parent
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SekdError(f"{path}: cannot read manifest ({exc})") from None
    if rows and not {"id", "noisy", "clean"} <= set(rows[0]):
        raise SekdError(f"{path}: a manifest needs the columns id, noisy, clean (got {', '.join(rows[0])})")
    if not rows:
        raise SekdError(f"{path}: no mixtures")
    splits: dict[str, list[Pair]] = {}
    for row in rows:
        pair = Pair(row["id"], root / row["noisy"], root / row["clean"])
        splits.setdefault(row.get("split") or "all", []).append(pair)
    return Corpus("manifest", path, splits, flat=list(splits) == ["all"])


def _l3das23(root: Path, folders: list[Path]) -> Corpus:
    splits, problems = {}, {}
    for folder in folders:
        name = folder.name[len(L3DAS23_PREFIX):]
        inputs = {mic: {p.name[:-len(f"_{mic}.wav")]: p for p in sorted((folder / "data").glob(f"*_{mic}.wav"))}
                  for mic in "AB"}
        labels = {p.stem: p for p in sorted((folder / "labels").glob("*.wav"))}
        found = []
        if not inputs["A"]:
            found.append(f"{folder / 'data'}: no <id>_A.wav files")
        found += [f"{path}: no label {folder / 'labels' / (i + '.wav')}" for i, path in inputs["A"].items()
                  if i not in labels]
        found += [f"{path}: no mic A file {folder / 'data' / (i + '_A.wav')}" for i, path in inputs["B"].items()
                  if i not in inputs["A"]]
        found += [f"{path}: no input {folder / 'data' / (i + '_A.wav')}" for i, path in labels.items()
                  if i not in inputs["A"]]
        splits[name] = [Pair(i, a, labels[i], (inputs["B"][i],) if i in inputs["B"] else ())
                        for i, a in inputs["A"].items() if i in labels]
        problems[name] = found
    aliases = {alias: names for alias, names in L3DAS23_SPLITS.items()}
    if "test" not in splits:
        aliases["test"] = ("dev",)  # the challenge's test labels were not public; dev is what papers report
    return Corpus("l3das23", root, splits, problems, aliases)


def _voicebank(root: Path) -> Corpus:
    splits: dict[str, list[Pair]] = {"train": [], "valid": [], "test": []}
    problems: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for noisy_dir in sorted(root.glob("noisy_*set*_wav")):
        clean_dir = root / ("clean_" + noisy_dir.name[len("noisy_"):])
        if not clean_dir.is_dir():
            problems["test" if "testset" in noisy_dir.name else "train"].append(f"{noisy_dir}: no folder {clean_dir}")
            continue
        pairs, found = _match(noisy_dir, clean_dir, _same_name)
        if "testset" in noisy_dir.name:
            splits["test"] += pairs
            problems["test"] += found
            continue
        for pair in pairs:
            held_out = pair.id.split("_")[0] in VOICEBANK_VALID_SPEAKERS
            splits["valid" if held_out else "train"].append(pair)
        problems["train"] += found
    return Corpus("voicebank", root, {k: v for k, v in splits.items() if v or problems[k]}, problems)


def scan(data: str | Path) -> Corpus:
    """Recognise the layout of ``data`` (see the module docstring) and list its pairs."""
    data = Path(data)
    if data.is_file():
        return _manifest(data)
    if not data.exists():
        raise SekdError(f"{data}: no such file or folder")
    if (data / "manifest.csv").is_file():
        return _manifest(data / "manifest.csv")
    if data.name.startswith(L3DAS23_PREFIX) and (data / "data").is_dir():
        return _l3das23(data, [data])
    l3das23 = sorted(p for p in data.glob(L3DAS23_PREFIX + "*") if (p / "data").is_dir())
    if l3das23:
        return _l3das23(data, l3das23)
    if any(data.glob("noisy_*set*_wav")):
        return _voicebank(data)
    noisy_dirs = [data / "noisy"] if (data / "noisy").is_dir() else [p / "noisy" for p in data.iterdir()
                                                                      if (p / "noisy").is_dir()]
    if noisy_dirs:
        names = [p.name for d in noisy_dirs for p in d.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES]
        if names and all(_dns_key(name) for name in names):
            return _folder_pairs("dns", data, _dns_key)
        return _folder_pairs("paired", data, _same_name)
    raise SekdError(f"{data}: not a corpus: no manifest.csv, no L3DAS23_Task1_* folders, no VoiceBank-DEMAND "
                    "folders (noisy_testset_wav ...), no noisy/ and clean/ folders")


def find_pools(data: str | Path) -> tuple[str, Path, dict[str, Path]] | None:
    """``(layout, root, {pool: folder})`` of the pools in ``data`` (see the module docstring), or None."""
    data = Path(data)
    if (data / "pools").is_dir():
        data = data / "pools"
    for layout, (base, names) in DNS_DOWNLOADS.items():
        for root in (data / base, data):
            if root.name == base and (root / names["clean"]).is_dir() and (root / names["noise"]).is_dir():
                return layout, root, {pool: root / name for pool, name in names.items() if (root / name).is_dir()}
    if (data / "clean").is_dir() and (data / "noise").is_dir() and not (data / "noisy").is_dir():
        rir = [data / name for name in RIR_FOLDERS if (data / name).is_dir()]
        return "pools", data, {"clean": data / "clean", "noise": data / "noise", **({"rir": rir[0]} if rir else {})}
    return None


def _pool_file(path: Path) -> PoolFile | str:
    """The header of one pool file, or the line that says why it cannot be used."""
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises several types; all mean "not audio we can read"
        return f"{path}: cannot read audio ({exc})"
    if info.frames <= 0:
        return f"{path}: the file holds no samples"
    return PoolFile(path, info.samplerate, info.channels, info.frames)


def scan_pools(data: str | Path, threads: int = 8) -> Pools:
    """The pools of ``data`` with every file's header read (unreadable files become ``problems``)."""
    found = find_pools(data)
    if found is None:
        raise SekdError(f"{data}: no pools for online mixing: no clean/ and noise/ folders (and optional rir/), "
                        "no DNS Challenge download (datasets_fullband/clean_fullband ..., datasets/clean ...), "
                        "no pools/ of a corpus built by 'sekd data build'")
    layout, root, folders = found
    listed = {pool: [p for name, p in _audio_files(folder).items()
                     if not (pool == "rir" and "noise" in Path(name).stem.lower())]
              for pool, folder in folders.items()}
    with ThreadPoolExecutor(threads) as pool_of_threads:  # headers of many files: libsndfile reads outside the GIL
        headers = {pool: list(pool_of_threads.map(_pool_file, paths)) for pool, paths in listed.items()}
    return Pools(layout, root, folders,
                 {pool: [h for h in results if isinstance(h, PoolFile)] for pool, results in headers.items()},
                 [h for results in headers.values() for h in results if isinstance(h, str)])


def pool_report(pools: Pools) -> list[str]:
    """Lines for ``sekd data check``: files, hours, channels and rates per pool."""
    lines = [f"pools: {pools.layout} ({pools.root})", "pool    files      hours  channels  rate          folder"]
    for pool in POOL_NAMES:
        files = pools.files.get(pool, [])
        if pool not in pools.folders:
            lines.append(f"{pool:<6} {'-':>6}  (no folder: online mixing without rooms, data.rir_prob=0)")
            continue
        channels = ",".join(map(str, sorted({f.channels for f in files}))) or "-"
        rates = ",".join(map(str, sorted({f.rate for f in files}))) or "-"
        lines.append(f"{pool:<6} {len(files):>6} {pools.seconds(pool) / 3600:>10.3f}  {channels:<8}  {rates:<12}  "
                     f"{pools.folders[pool].relative_to(pools.root)}")
    if pools.files.get("clean"):
        shortest = min(pools.files["clean"], key=lambda f: f.seconds)
        lines.append(f"shortest clean file: {shortest.seconds:.2f} s ({shortest.path}); a longer data.crop_seconds "
                     "refuses it")
    return lines


@dataclass
class _Header:
    rate: int
    channels: int
    frames: int


def _header(path: Path, problems: list[str]) -> _Header | None:
    if not path.is_file():
        problems.append(f"{path}: no such file")
        return None
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises several types; all mean "not audio we can read"
        problems.append(f"{path}: cannot read audio ({exc})")
        return None
    if info.frames == 0:
        problems.append(f"{path}: the file holds no samples")
        return None
    return _Header(info.samplerate, info.channels, info.frames)


def check_corpus(data: str | Path) -> tuple[Corpus, list[str], list[str]]:
    """Scan ``data`` and read every file's header: ``(corpus, report lines, problems)``.

    Problems: the listing's, unreadable or empty files, a clean target that is not mono,
    noisy files whose channel count or sample rate differs from the corpus's usual one
    (for L3DAS23: not 4 channels per microphone), a clean file at another rate than its
    noisy one, files of one pair of different durations, and what
    :func:`sekd.data.checks.pair_problems` finds reading the samples (NaN, a silent or
    too short reference, a truncated WAV).
    """
    corpus = scan(data)
    problems = [line for lines in corpus.problems.values() for line in lines]
    headers: dict[Path, _Header] = {}
    for pair in (p for pairs in corpus.splits.values() for p in pairs):
        for path in (pair.noisy, *pair.more_noisy, pair.clean):
            header = _header(path, problems)
            if header:
                headers[path] = header
    noisy_paths = [path for pairs in corpus.splits.values() for p in pairs for path in (p.noisy, *p.more_noisy)]
    usual_channels = Counter(headers[p].channels for p in noisy_paths if p in headers).most_common(1)
    usual_rate = Counter(headers[p].rate for p in noisy_paths if p in headers).most_common(1)
    expected_channels = L3DAS23_CHANNELS if corpus.layout == "l3das23" else (usual_channels or [(None,)])[0][0]
    lines = [f"layout: {corpus.layout} ({corpus.root})", "split      pairs     hours  channels  rate"]
    for name, pairs in corpus.splits.items():
        seconds, channels, rates = 0.0, Counter(), Counter()
        for pair in pairs:
            noisy, clean = headers.get(pair.noisy), headers.get(pair.clean)
            if noisy:
                seconds += noisy.frames / noisy.rate
                rates[noisy.rate] += 1
            inputs = [headers.get(p) for p in (pair.noisy, *pair.more_noisy)]
            channels["+".join(str(h.channels) if h else "?" for h in inputs)] += 1
            for path, h in zip((pair.noisy, *pair.more_noisy), inputs, strict=True):
                if h and h.channels != expected_channels:
                    problems.append(f"{path}: {h.channels} channel(s), expected {expected_channels}")
                if h and usual_rate and h.rate != usual_rate[0][0]:
                    problems.append(f"{path}: sample rate {h.rate} Hz, the corpus's noisy files have "
                                    f"{usual_rate[0][0]} Hz")
                if h and noisy and h.frames / h.rate != noisy.frames / noisy.rate:
                    problems.append(f"{path}: {h.frames / h.rate:.3f} s, but {pair.noisy} lasts "
                                    f"{noisy.frames / noisy.rate:.3f} s")
            if clean and clean.channels != 1:
                problems.append(f"{pair.clean}: the clean target must be mono, it has {clean.channels} channels")
            if clean and noisy and clean.rate != noisy.rate:
                problems.append(f"{pair.clean}: sample rate {clean.rate} Hz, but {pair.noisy} has {noisy.rate} Hz")
            if clean and noisy and clean.frames / clean.rate != noisy.frames / noisy.rate:
                problems.append(f"{pair.clean}: {clean.frames / clean.rate:.3f} s, but {pair.noisy} lasts "
                                f"{noisy.frames / noisy.rate:.3f} s")
        lines.append(f"{name:<10} {len(pairs):>5} {seconds / 3600:>9.3f}  {','.join(channels) or '-':<8}  "
                     f"{','.join(map(str, sorted(rates))) or '-'}")
    total = sum(len(p) for p in corpus.splits.values())
    lines.append(f"{'total':<10} {total:>5}")
    all_pairs = [pair for pairs in corpus.splits.values() for pair in pairs]
    problems += [line for found in check_pairs(all_pairs).values() for line in found]
    return corpus, lines, list(dict.fromkeys(problems))


def check_data(data: str | Path) -> list[str]:
    """``sekd data check``: print the layout, counts and hours per split (and per pool, for pools) and every
    problem; returns the problems."""
    lines, problems = [], []
    has_pools = find_pools(data) is not None
    try:
        _, lines, problems = check_corpus(data)
    except SekdError:
        if not has_pools or (Path(data) / "manifest.csv").exists():
            raise
    if has_pools:
        pools = scan_pools(data)
        lines += ([""] if lines else []) + pool_report(pools)
        problems += pools.problems + [line for found in check_pools(pools).values() for line in found]
    print("\n".join(lines))
    if problems:
        print(f"\n{len(problems)} problem(s):")
        print("\n".join(f"  {line}" for line in problems))
    else:
        print("\nno problems found")
    return problems
