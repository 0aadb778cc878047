"""On-the-fly mixing (data.mixing=online): pools recognised and checked, examples as pure functions of their seed,
the SNR, level and room recipe, and training on tiny pools, a pool file failing mid-run included."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import speechlike, write_pair_folder
from sekd.checkpoint import read_checkpoint_file
from sekd.cli import main
from sekd.config import load_config
from sekd.data import datasets
from sekd.data.checks import require_good_pools
from sekd.data.datasets import EpochBatchSampler, ResumableLoader
from sekd.data.layouts import scan_pools
from sekd.data.mixing import EARLY_S, OnlineMixDataset, PoolFileError, reverberate, room_filter_from
from sekd.errors import SekdError

N = 8000  # 0.5 s crops


def _write(path, audio, sr):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.asarray(audio, dtype=np.float32).T, sr, subtype="PCM_24" if path.suffix == ".flac" else "FLOAT")


def _tone(hz, seconds, sr):
    return 0.3 * np.sin(2 * np.pi * hz * np.arange(int(seconds * sr)) / sr)


def _room(sr=16000, direct=40, channels=1):
    """A response with its direct path, an early reflection (20 ms later) and a late one (200 ms later)."""
    rir = np.zeros((channels, int(0.3 * sr)))
    for c in range(channels):
        rir[c, direct + c] = 1.0
        rir[c, direct + c + int(0.02 * sr)] = 0.5
        rir[c, direct + c + int(0.2 * sr)] = 0.3
    return rir


def pools_tree(root):
    """User pools at several rates: speech at 16 and 48 kHz, a 1 kHz tone at 8 kHz, noise at 44.1 kHz, a short hum,
    and one room at 32 kHz."""
    rng = np.random.default_rng(0)
    _write(root / "clean" / "a.wav", speechlike(2.0, seed=1), 16000)
    _write(root / "clean" / "sub" / "b.flac", speechlike(2.0, seed=2, sr=48000), 48000)
    _write(root / "clean" / "tone.wav", _tone(1000, 1.5, 8000), 8000)
    _write(root / "noise" / "white.wav", 0.1 * rng.standard_normal(int(1.5 * 44100)), 44100)
    _write(root / "noise" / "hum.wav", _tone(50, 0.2, 16000), 16000)
    _write(root / "rir" / "room.wav", _room(32000)[0], 32000)
    return root


@pytest.fixture
def pools_dir(tmp_path):
    return pools_tree(tmp_path / "pools")


def dataset(root, **options):
    return OnlineMixDataset(scan_pools(root), N, **options)


def test_an_example_is_a_pure_function_of_its_seed(pools_dir):
    a, b = dataset(pools_dir), dataset(pools_dir)  # separate scans: nothing carried between them
    for seed in (0, 1, 12345):
        x, y = a.draw(seed), b.draw(seed)
        assert np.array_equal(x.noisy, y.noisy) and np.array_equal(x.clean, y.clean)
    noisy, clean = a[(99, 7)]  # the sampler's (index, item seed): the seed alone decides
    assert torch.equal(noisy, torch.from_numpy(a.draw(7).noisy)) and noisy.shape == (1, N) and clean.shape == (N,)
    assert len({a.draw(seed).noisy.tobytes() for seed in range(10)}) == 10


def test_snr_and_level_come_from_their_ranges(pools_dir):
    ds = dataset(pools_dir, snr_range=(-5, 20), level_range=(-35, -15), rir_prob=0.5, noises_per_example=(1, 2))
    rooms = 0
    for seed in range(30):
        m = ds.draw(seed)
        speech, noise = m.speech.astype(np.float64), m.noise.astype(np.float64)
        assert -5 <= m.snr_db <= 20 and -35 <= m.level_dbfs <= -15 and 1 <= len(m.noise_files) <= 2
        assert 10 * np.log10(np.mean(speech ** 2) / np.mean(noise ** 2)) == pytest.approx(m.snr_db, abs=0.01)
        assert np.allclose(m.noisy, speech + noise, atol=1e-6)
        level = 20 * np.log10(np.sqrt(np.mean(m.noisy.astype(np.float64) ** 2)))
        peak = max(np.abs(m.noisy).max(), np.abs(m.clean).max())
        assert level == pytest.approx(m.level_dbfs, abs=0.01) or (level < m.level_dbfs and peak == pytest.approx(0.99))
        rooms += m.rir_file is not None
    assert 5 <= rooms <= 25


def test_room_target_keeps_the_direct_path_and_early_reflections():
    rir, n = _room(), 4000
    room = room_filter_from(rir, n)
    before, after = room.before, room.direct
    impulse = np.zeros(before + n + after)
    impulse[before + 500] = 1.0  # dry speech: one click inside the crop
    wet, target = room.apply(impulse)
    early, late = int(0.02 * 16000), int(0.2 * 16000)
    assert int(EARLY_S * 16000) > early  # the 20 ms reflection is early, the 200 ms one late
    assert set(np.flatnonzero(np.abs(target) > 1e-3)) == {500, 500 + early}  # aligned with the direct path
    assert set(np.flatnonzero(np.abs(wet[0]) > 1e-3)) == {500, 500 + early, 500 + late}
    speech = np.random.default_rng(0).standard_normal(before + n + after)
    fast, exact = room.apply(speech), reverberate(speech, rir, room.direct, before, n)  # build.py's recipe
    for a, b in zip(fast, exact):
        assert np.abs(a - b).max() < 1e-5 * np.abs(b).max()


def test_room_target_in_a_drawn_example(tmp_path):
    root = tmp_path / "p"
    dry = np.random.default_rng(3).standard_normal(32000) * 0.1
    _write(root / "clean" / "c.wav", dry, 16000)
    _write(root / "noise" / "n.wav", 0.1 * np.random.default_rng(4).standard_normal(16000), 16000)
    rir = _room(direct=25)
    _write(root / "rir" / "r.wav", rir[0], 16000)
    m = dataset(root, rir_prob=1.0, snr_range=(30, 30)).draw(5)
    before, d = rir.shape[1] - 1 - 25, 25
    span = np.pad(dry, (before, d))[m.clean_start:m.clean_start + before + N + d]
    wet, target = reverberate(span, rir, d, before, N)
    gain = np.dot(m.clean, target) / np.dot(target, target)
    assert np.abs(m.clean - gain * target).max() < 1e-4 and np.abs(m.speech[0] - gain * wet[0]).max() < 1e-4


def test_any_rate_and_multichannel_rooms(tmp_path):
    root = pools_tree(tmp_path / "p")
    for f in ("a.wav", "sub/b.flac"):
        (root / "clean" / f).unlink()  # the 8 kHz tone alone: it must come out at 1 kHz
    m = dataset(root, rir_prob=0.0, snr_range=(60, 60)).draw(0)
    spectrum = np.abs(np.fft.rfft(m.clean))
    assert np.fft.rfftfreq(N, 1 / 16000)[spectrum.argmax()] == pytest.approx(1000, abs=4)
    _write(root / "rir" / "room.wav", _room(48000, channels=2), 48000)  # a 2-microphone room at 48 kHz
    m = OnlineMixDataset(scan_pools(root), N, in_channels=2, rir_prob=1.0).draw(1)
    assert m.noisy.shape == (2, N) and m.clean.shape == (N,)
    assert not np.allclose(m.noise[0], m.noise[1])  # mono noise: another crop per microphone


def _dns_download(root, fullband=True):
    sr, (base, clean, noise) = (48000, ("datasets_fullband", "clean_fullband", "noise_fullband")) if fullband else \
        (16000, ("datasets", "clean", "noise"))
    for i in range(3):
        _write(root / base / clean / "read_speech" / f"book_{i:05d}_chp_0001_reader_1_{i}_seg_1.wav",
               speechlike(1.2, seed=i, sr=sr), sr)
    for i in range(2):
        _write(root / base / noise / f"door_{i}.wav", 0.05 * np.random.default_rng(i).standard_normal(sr), sr)
    irs = root / base / "impulse_responses"
    _write(irs / "SLR26" / "simulated_rirs_48k" / "smallroom" / "Room001-00001.wav", _room(sr)[0], sr)
    _write(irs / "SLR28" / "RIRS_NOISES" / "pointsource_noises" / "noise-free-sound-0001.wav",
           0.1 * np.random.default_rng(9).standard_normal(sr), sr)  # a noise the RIR package ships: not a room
    (root / base / clean / "README.txt").write_text("not audio\n")
    return root


@pytest.mark.parametrize("fullband, layout", [(True, "dns-download-fullband"), (False, "dns-download")])
def test_dns_download_is_recognised_with_hours_per_pool(tmp_path, capsys, fullband, layout):
    root = _dns_download(tmp_path / "DNS", fullband)
    assert main(["data", "check", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"pools: {layout}" in out and "no problems found" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1] in (["clean"], ["noise"],
                                                                                               ["rir"])}
    assert rows["clean"][1:3] == ["3", f"{3 * 1.2 / 3600:.3f}"] and rows["noise"][1] == "2" and rows["rir"][1] == "1"
    pools = scan_pools(root / ("datasets_fullband" if fullband else "datasets"))  # the folder itself works too
    assert pools.layout == layout and [f.path.name for f in pools.files["rir"]] == ["Room001-00001.wav"]
    assert dataset(root, rir_prob=1.0).draw(0).noisy.shape == (1, N)


def test_bad_pool_files_are_named_or_left_out(pools_dir, capsys, caplog):
    (pools_dir / "noise" / "broken.wav").write_bytes(b"RIFF but not audio")
    _write(pools_dir / "clean" / "silent.wav", np.zeros(16000), 16000)
    _write(pools_dir / "clean" / "short.wav", speechlike(0.2), 16000)
    bad = ["noise/broken.wav: cannot read audio", "clean/silent.wav: silent", "clean/short.wav: 0.200 s, shorter"]
    pools = scan_pools(pools_dir)
    with pytest.raises(SekdError) as refused:
        require_good_pools(pools, "pools", N)
    assert "3 of 9 pool file(s)" in str(refused.value) and all(b in str(refused.value) for b in bad)
    with caplog.at_level("WARNING", logger="sekd"):
        kept = require_good_pools(pools, "pools", N, skip_bad=True)
    assert "left out 3 of 9" in caplog.text
    assert sorted(f.path.name for f in kept.files["clean"]) == ["a.wav", "b.flac", "tone.wav"]
    assert main(["data", "check", str(pools_dir)]) == 1  # the check names the unreadable and the silent file
    out = capsys.readouterr().out
    assert bad[0] in out and bad[1] in out


def test_a_pool_file_gone_mid_run_is_named(pools_dir):
    ds = dataset(pools_dir, rir_prob=0.0)
    (pools_dir / "noise" / "white.wav").unlink()
    (pools_dir / "noise" / "hum.wav").write_bytes((pools_dir / "noise" / "hum.wav").read_bytes()[:100])
    with pytest.raises(PoolFileError, match="white.wav: no such file|hum.wav: holds fewer samples"):
        for seed in range(20):
            ds.draw(seed)
    from torch._utils import ExceptionWrapper  # how a DataLoader worker hands its exception over
    try:
        raise PoolFileError("/p/noise/x.wav: no such file")
    except PoolFileError:
        wrapped = ExceptionWrapper(where="in DataLoader worker process 0")
    with pytest.raises(PoolFileError) as again:
        wrapped.reraise()
    assert str(again.value) == "/p/noise/x.wav: no such file"


def test_batches_resume_exactly_and_shard_over_ranks(pools_dir, monkeypatch):
    ds = dataset(pools_dir)
    def batches(position, count):
        sampler = EpochBatchSampler(len(ds), 2, seed=3, position=lambda: position)
        return [b for b, _ in zip(ResumableLoader(ds, batch_sampler=sampler), range(count))]
    straight, resumed = batches(0, 5), batches(3, 2)  # past an epoch's end too: len(ds) // 2 batches an epoch
    for a, b in zip(straight[3:], resumed):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    sampler = EpochBatchSampler(len(ds), 1, seed=3)
    whole = [item for batch in sampler.epoch_batches(0) for item in batch]
    ranks = []
    for rank in (0, 1):
        monkeypatch.setattr(datasets, "_rank_and_world", lambda rank=rank: (rank, 2))
        ranks.append([item for batch in sampler.epoch_batches(0) for item in batch])
    assert ranks[0] == whole[0:len(ranks[0]) * 2:2] and ranks[1] == whole[1:len(ranks[1]) * 2:2]


RUN = ["model.preset=tiny", "data.batch_size=2", "data.crop_seconds=0.5", "data.valid_files=1", "train.warmup_steps=1",
       "train.log_every=1", "train.threads=1", "data.mixing=online"]


def test_training_mixes_online_and_records_the_keys(pools_dir, tmp_path):
    valid = write_pair_folder(tmp_path / "valid", n=1)
    out = tmp_path / "run"
    assert main(["train", "configs/cpu-teacher.yaml", f"data.train={pools_dir}", f"data.valid={valid}",
                 f"train.out_dir={out}", "train.max_steps=3", "train.val_every=3", "data.rir_prob=0.5", *RUN]) == 0
    config = (out / "config.yaml").read_text()
    assert "mixing: online" in config and "rir_prob: 0.5" in config
    fixed = load_config(None, []).to_dict()["data"]  # a fixed run's config equals one from before these keys
    assert not {"mixing", "pools", "snr_range", "rir_prob"} & set(fixed)


def test_online_without_validation_files_says_which_key(pools_dir, tmp_path, capsys):
    assert main(["train", "configs/cpu-teacher.yaml", f"data.train={pools_dir}", f"train.out_dir={tmp_path / 'r'}",
                 "train.max_steps=1", *RUN]) == 2
    assert "data.valid: needed with data.mixing=online" in capsys.readouterr().err


def test_a_pool_file_truncated_mid_run_stops_training_with_its_name(tmp_path, capsys, monkeypatch):
    from sekd.engine.module import EnhancementModule
    root = tmp_path / "p"
    clean = root / "clean" / "only.wav"
    _write(clean, speechlike(3.0), 16000)
    _write(root / "noise" / "n.wav", 0.1 * np.random.default_rng(0).standard_normal(16000), 16000)
    valid = write_pair_folder(tmp_path / "valid", n=1)
    step = EnhancementModule.training_step

    def truncating_step(self, batch, batch_idx):
        if self.global_step == 3:
            clean.write_bytes(clean.read_bytes()[:2000])  # a copy that stopped: the header still says 3 s
        return step(self, batch, batch_idx)
    monkeypatch.setattr(EnhancementModule, "training_step", truncating_step)
    out = tmp_path / "run"
    assert main(["train", "configs/cpu-teacher.yaml", f"data.train={root}", f"data.valid={valid}",
                 f"train.out_dir={out}", "train.max_steps=8", "train.val_every=2", "data.rir_prob=0", *RUN]) == 2
    err = capsys.readouterr().err
    assert f"{clean}: holds fewer samples than when training started" in err and "Traceback" not in err
    last = read_checkpoint_file(out / "checkpoints" / "last.ckpt")
    assert last["global_step"] in (2, 4)  # the last validation's, whole


def test_the_built_corpus_writes_its_pools_and_adds_them_to_an_older_one(small_corpus, tmp_path, capsys):
    from sekd.data.build import SMALL_POOLS, build_corpus
    pools = scan_pools(small_corpus)
    assert pools.layout == "pools" and pools.root == small_corpus / "pools"
    counts = {pool: len(files) for pool, files in pools.files.items()}
    info = json.loads((small_corpus / "corpus.json").read_text())
    speakers = json.loads((small_corpus / "pools" / "pools.json").read_text())["clean_speakers"]
    assert counts == {"clean": len(speakers), "noise": SMALL_POOLS.noise_files, "rir": SMALL_POOLS.rirs}
    assert set(speakers) == set(info["splits"]["train"]["speakers"])  # every train voice's utterances, once
    assert {sf.info(str(f.path)).subtype for f in pools.files["rir"]} == {"FLOAT"}
    older = tmp_path / "older"
    shutil.copytree(small_corpus, older)
    shutil.rmtree(older / "pools")
    stamp = (older / "manifest.csv").stat().st_mtime_ns
    build_corpus(older, small=True, workers=1, progress=False)
    assert (older / "manifest.csv").stat().st_mtime_ns == stamp  # the mixtures stay as they were
    assert sorted(p.name for p in (older / "pools" / "noise").iterdir()) == \
        sorted(p.name for p in (small_corpus / "pools" / "noise").iterdir())
    assert main(["data", "check", str(older)]) == 0
    assert "pools: pools" in capsys.readouterr().out


@pytest.mark.parametrize("override, message", [
    ("data.mixing=sometimes", "data.mixing must be fixed or online"),
    ("data.snr_range=[20,-5]", "data.snr_range must be [low, high]"),
    ("data.level_range=[-20,3]", "high <= 0"),
    ("data.rir_prob=1.5", "data.rir_prob must be in [0, 1]"),
    ("data.noises_per_example=[0,2]", "low >= 1"),
    ("data.snr_range=5", "data.snr_range: expected list"),
    ("data.rir_prob=0.2", "data.rir_prob applies to data.mixing=online only"),
])
def test_online_keys_are_checked(override, message):
    with pytest.raises(SekdError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(None, [override])
