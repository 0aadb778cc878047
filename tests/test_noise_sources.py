"""The built-in corpus's noise: families, held-out splits, the ood split, shares and generators.

The tests that list real files need the Debian packages of noise.PACKAGES and
noise.OOD_PACKAGES (installed when missing, as the corpus build does: as root or with
password-less sudo).
"""

import hashlib
from pathlib import Path

import numpy as np
import pytest

from sekd.audio import SAMPLE_RATE
from sekd.data import noise
from sekd.data.debian import ensure_packages
from sekd.errors import SekdError


@pytest.fixture(scope="module")
def files():
    ensure_packages([*noise.PACKAGES, *noise.OOD_PACKAGES])
    return {split: noise.noise_files(split) for split in noise.SPLITS}


def test_package_roles():
    assert noise.PACKAGES and noise.OOD_PACKAGES
    assert not set(noise.PACKAGES) & set(noise.OOD_PACKAGES)
    used = {package for spec in noise.FAMILY_SPECS.values() for package, _ in spec.sources}
    assert used == set(noise.PACKAGES) | set(noise.OOD_PACKAGES)
    assert not used & set(noise.RESERVED_PACKAGES)
    for name in noise.OOD_FAMILY_NAMES:  # an ood family draws only on ood packages, an in-domain one never
        assert {package for package, _ in noise.FAMILY_SPECS[name].sources} <= set(noise.OOD_PACKAGES)
    for name in noise.IN_DOMAIN_FAMILIES:
        assert {package for package, _ in noise.FAMILY_SPECS[name].sources} <= set(noise.PACKAGES)


def test_family_table():
    assert set(noise.FAMILIES) == set(noise.FAMILY_SPECS)
    assert not set(noise.FAMILIES) & set(noise.GENERATED_TYPES)
    assert len(noise.IN_DOMAIN_FAMILIES) >= 20
    assert sum(not noise.is_stationary(name) for name in noise.IN_DOMAIN_FAMILIES) > len(noise.IN_DOMAIN_FAMILIES) / 2
    assert noise.is_stationary("pink") and noise.is_stationary("hum") and not noise.is_stationary("transient")


def test_splits_are_disjoint_and_complete(files):
    assert set(files["ood"]) == set(noise.OOD_FAMILY_NAMES)
    for split in ("train", "valid", "test"):
        assert set(files[split]) == set(noise.IN_DOMAIN_FAMILIES)
    seen: dict[Path, str] = {}
    for split, families in files.items():
        for family, paths in families.items():
            assert paths, f"{family} has no files in {split}"
            assert len(paths) <= noise.MAX_FILES_PER_FAMILY
            for path in paths:
                assert path.is_file() and path.suffix.lower() in noise.AUDIO_SUFFIXES
                assert seen.setdefault(path, f"{split}/{family}") == f"{split}/{family}", path
    assert not [p for p in seen if "_desc" in p.name or "audio-channel-" in p.name]  # spoken words are not noise
    contents = {hashlib.blake2b(p.read_bytes(), digest_size=16).digest() for p in seen}
    assert len(contents) == len(seen)  # no copy of a sound in two places (it could cross the splits)
    ood_files = {p for paths in files["ood"].values() for p in paths}
    in_domain = {p for split in ("train", "valid", "test") for paths in files[split].values() for p in paths}
    assert ood_files and not ood_files & in_domain


def test_held_out_files_keep_variants_together(files):
    for family in noise.IN_DOMAIN_FAMILIES:
        groups = {split: {noise._variant_group(p) for p in files[split][family]}
                  for split in ("train", "valid", "test")}
        total = sum(len(g) for g in groups.values())
        if len(set().union(*groups.values())) >= 3:  # split by groups of variants
            assert len(set().union(*groups.values())) == total, family


def test_split_files_rule():
    seconds = {Path(f"/x/{stem}.ogg"): s for stem, s in
               [("rain1", 9.0), ("rain2", 9.0), ("rain3", 9.0), ("dog_bark1", 1.0), ("dog_bark2", 1.5), ("car", 4.0),
                ("door-3", 0.5), ("door-4", 0.5), ("wind", 6.0)]}
    out = noise.split_files(seconds)
    assert sorted(p for ps in out.values() for p in ps) == sorted(seconds)
    assert set(out["train"]) >= {Path("/x/rain1.ogg"), Path("/x/rain2.ogg"), Path("/x/rain3.ogg")}
    # the heaviest groups first, each to the split furthest below its share
    assert out == {"train": [Path("/x/rain1.ogg"), Path("/x/rain2.ogg"), Path("/x/rain3.ogg")],
                   "test": [Path("/x/door-3.ogg"), Path("/x/door-4.ogg"), Path("/x/wind.ogg")],
                   "valid": [Path("/x/car.ogg"), Path("/x/dog_bark1.ogg"), Path("/x/dog_bark2.ogg")]}
    for split, paths in out.items():
        assert paths, split
        for other in set(out) - {split}:
            assert not {noise._variant_group(p) for p in paths} & {noise._variant_group(p) for p in out[other]}
    assert noise.split_files(dict(reversed(seconds.items()))) == out  # the order of the listing does not matter
    few = noise.split_files({Path(f"/y/hum{k}.wav"): 1.0 for k in range(5)})  # one group: round-robin by name
    assert [len(few[s]) for s in ("train", "valid", "test")] == [3, 1, 1]
    three = noise.split_files({Path(f"/y/hum{k}.wav"): 1.0 for k in range(3)})
    assert all(len(files) == 1 for files in three.values())


def test_shares_and_choose_noise():
    families = list(noise.IN_DOMAIN_FAMILIES)
    shares = noise.noise_type_shares(families)
    assert sum(shares.values()) == pytest.approx(1.0)
    assert set(shares) == set(families) | set(noise.GENERATED_TYPES)
    assert sum(shares[f] for f in families) == pytest.approx(noise.RECORDED_SHARE)
    assert noise.noise_type_shares([]).keys() == set(noise.GENERATED_TYPES)
    with pytest.raises(SekdError, match="unknown noise families"):
        noise.noise_type_shares(["no-such-family"])
    first, second = np.random.default_rng(7), np.random.default_rng(7)
    assert [noise.choose_noise(first, families) for _ in range(50)] == [
        noise.choose_noise(second, families) for _ in range(50)]  # a seeded generator gives the same types
    rng = np.random.default_rng(0)
    seq = [noise.choose_noise(rng, families) for _ in range(20000)]
    recorded = sum(kind in noise.FAMILY_SPECS for kind in seq) / len(seq)
    assert recorded == pytest.approx(noise.RECORDED_SHARE, abs=0.02)
    assert set(seq) <= set(shares)


def _fake_clips(rng, seconds):
    return [rng.standard_normal(int(s * SAMPLE_RATE)).astype(np.float32) for s in seconds]


@pytest.mark.parametrize("kind", [*noise.FAMILY_SPECS, *noise.GENERATED_TYPES])
def test_make_noise_every_type(kind):
    rng = np.random.default_rng(1)
    recorded = {name: _fake_clips(rng, [0.05, 0.7, 3.0]) for name in noise.FAMILY_SPECS}
    talkers = [_fake_clips(rng, [0.5, 1.0]) for _ in range(4)]
    for n in (1, 4000, 5 * SAMPLE_RATE):
        out = noise.make_noise(kind, n, np.random.default_rng(2), recorded, talkers)
        assert out.shape == (n,) and np.all(np.isfinite(out))
        if n > 4000:
            assert noise.rms(out) > 0
    again = noise.make_noise(kind, 4000, np.random.default_rng(2), recorded, talkers)
    assert np.array_equal(again, noise.make_noise(kind, 4000, np.random.default_rng(2), recorded, talkers))


def test_make_noise_refuses_unknown_or_empty():
    rng = np.random.default_rng(0)
    with pytest.raises(SekdError, match="unknown noise type"):
        noise.make_noise("no-such-type", 100, rng, {}, [])
    family = noise.IN_DOMAIN_FAMILIES[0]
    with pytest.raises(SekdError, match="no loaded files"):
        noise.make_noise(family, 100, rng, {family: []}, [])


def test_real_files_load_and_play(files):
    """One file of every family in every split loads, and the family's noise from it is finite and audible."""
    for split, families in files.items():
        for family, paths in families.items():
            clip = noise.load_noise(paths[len(paths) // 2])
            assert clip is not None, paths[len(paths) // 2]
            assert clip.dtype == np.float32 and np.abs(clip).max() == pytest.approx(1.0)
            assert len(clip) <= noise.MAX_FILE_S * SAMPLE_RATE
            out = noise.make_noise(family, 3 * SAMPLE_RATE, np.random.default_rng(0), {family: [clip]}, [])
            assert out.shape == (3 * SAMPLE_RATE,) and np.all(np.isfinite(out)) and noise.rms(out) > 0


def test_unknown_split():
    with pytest.raises(SekdError, match="unknown noise split"):
        noise.noise_files("dev")
