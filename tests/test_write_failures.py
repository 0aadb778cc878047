"""A write the system refuses is one line naming the file and why, exit 1, and what was there before
stays as it was: on a real file system that runs out of room (a small tmpfs, as root) and, where
mounting is not allowed, under a real file-size limit (RLIMIT_FSIZE: the same failure, "File too large")."""

import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sekd.audio import append_whole, atomic_write_text, write_audio
from sekd.checkpoint import read_checkpoint_file, save_checkpoint_file
from sekd.engine.state import EventsLogger, MetricsCSVLogger
from sekd.errors import WriteFailed

ROOM = 16_000  # bytes a full disk has left: less than a second of 16-bit audio or any checkpoint
TRAIN = ["model.preset=tiny", "data.batch_size=2", "data.crop_seconds=0.5", "data.valid_files=1",
         "train.val_every=1", "train.warmup_steps=1", "train.log_every=1", "train.threads=1"]


def mounted_tmpfs(folder: Path, size: str) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


class SmallDisk:
    """A folder where writes fail when :meth:`run_out_of_room` or :meth:`sekd_short_of_room` say so."""

    def __init__(self, folder: Path, tmpfs: bool):
        self.folder, self.tmpfs = folder, tmpfs
        self.reason = "No space left on device" if tmpfs else "File too large"

    def run_out_of_room(self) -> None:
        """tmpfs: fill it up to :data:`ROOM` bytes left (in-process writes then fail)."""
        assert self.tmpfs
        fs = os.statvfs(self.folder)
        (self.folder / "filler").write_bytes(b"\0" * max(0, fs.f_bavail * fs.f_frsize - ROOM))

    def sekd_short_of_room(self, *args: str) -> subprocess.CompletedProcess:
        """``python -m sekd ARGS`` with only :data:`ROOM` bytes to write: the tmpfs filled, or a file-size limit."""
        if self.tmpfs:
            self.run_out_of_room()
            limit = None
        else:
            def limit():
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
                resource.setrlimit(resource.RLIMIT_FSIZE, (ROOM, ROOM))
        return subprocess.run([sys.executable, "-m", "sekd", *args], capture_output=True, text=True,
                              preexec_fn=limit, timeout=600)


@pytest.fixture(params=["tmpfs", "file-size-limit"])
def disk(request, tmp_path):
    folder = tmp_path / "disk"
    folder.mkdir()
    if request.param == "tmpfs":
        if not mounted_tmpfs(folder, "4m"):
            pytest.skip("mounting a tmpfs needs root where mounting is allowed; the file-size limit runs instead")
        yield SmallDisk(folder, tmpfs=True)
        subprocess.run(["umount", "-l", str(folder)], check=True)
    else:
        yield SmallDisk(folder, tmpfs=False)


@pytest.fixture
def tmpfs(tmp_path):
    folder = tmp_path / "tmpfs"
    folder.mkdir()
    if not mounted_tmpfs(folder, "1m"):
        pytest.skip("mounting a tmpfs needs root where mounting is allowed")
    yield SmallDisk(folder, tmpfs=True)
    subprocess.run(["umount", "-l", str(folder)], check=True)


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr[-3000:]
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt", ["wav", "l3das23-submission"])
def test_enhance_into_a_full_disk(disk, fmt, pair_folder, tiny_ckpt):
    out = disk.folder / "out"
    out.mkdir()
    suffix = ".wav" if fmt == "wav" else ".npy"
    for name in ("f0", "f1", "f2"):  # the outputs of an earlier run, which must survive
        (out / f"{name}{suffix}").write_bytes(f"earlier {name}".encode())
    before = snapshot(out)
    done = disk.sekd_short_of_room("enhance", "--ckpt", str(tiny_ckpt), str(pair_folder / "noisy"), "-o", str(out),
                                   "--format", fmt, "-q")
    assert done.returncode == 1, done.stderr[-3000:]
    assert error_lines(done.stderr) == [f"error: {out / ('f0' + suffix)}: cannot write: {disk.reason}"]
    assert snapshot(out) == before  # earlier outputs whole, no temporary file left


def test_stream_into_a_full_disk(disk, pair_folder, causal_ckpt):
    dst = disk.folder / "enhanced.wav"
    dst.write_bytes(b"earlier")
    done = disk.sekd_short_of_room("stream", "--ckpt", str(causal_ckpt), str(pair_folder / "noisy" / "f0.wav"),
                                   "-o", str(dst))
    assert done.returncode == 1
    assert error_lines(done.stderr) == [f"error: {dst}: cannot write: {disk.reason}"]
    assert dst.read_bytes() == b"earlier" and not list(disk.folder.glob("*.tmp"))


def test_stream_to_a_redirected_stdout_on_a_full_disk(tmpfs, pair_folder, causal_ckpt):
    tmpfs.run_out_of_room()
    with open(tmpfs.folder / "enhanced.raw", "wb") as stdout:
        done = subprocess.run([sys.executable, "-m", "sekd", "stream", "--ckpt", str(causal_ckpt),
                               str(pair_folder / "noisy" / "f0.wav"), "-o", "-"], stdout=stdout,
                              stderr=subprocess.PIPE, text=True, timeout=300)
    assert done.returncode == 1
    assert error_lines(done.stderr) == ["error: standard output: cannot write: No space left on device"]
    assert "Exception ignored" not in done.stderr


@pytest.fixture(scope="module")
def one_step_run(tmp_path_factory):
    """A finished one-step run (on a disk with room), copied by each test that resumes it."""
    from conftest import write_pair_folder
    root = tmp_path_factory.mktemp("write-failures")
    data = write_pair_folder(root / "data", n=3, seconds=0.6)
    run = root / "run"
    done = subprocess.run([sys.executable, "-m", "sekd", "train", "configs/cpu-teacher.yaml", f"data.train={data}",
                           f"train.out_dir={run}", "train.max_steps=1", *TRAIN], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return data, run


def test_training_into_a_full_disk_stops_with_one_line(disk, one_step_run):
    data, finished = one_step_run
    run = disk.folder / "run"
    shutil.copytree(finished, run)
    checkpoints = snapshot(run / "checkpoints")
    metrics = (run / "csv" / "metrics.csv").read_bytes()
    done = disk.sekd_short_of_room("train", "configs/cpu-teacher.yaml", f"data.train={data}", f"train.out_dir={run}",
                                   "train.max_steps=2", *TRAIN)
    assert done.returncode == 1, done.stderr[-3000:]
    lines = error_lines(done.stderr)
    assert lines in ([f"error: {run / 'checkpoints' / name}: cannot write: {disk.reason}"]
                     for name in ("best.ckpt", "last.ckpt")), done.stderr[-3000:]
    assert snapshot(run / "checkpoints") == checkpoints  # the earlier checkpoints whole, no temporary file
    assert read_checkpoint_file(run / "checkpoints" / "last.ckpt")["global_step"] == 1
    grown = (run / "csv" / "metrics.csv").read_bytes()
    assert grown.startswith(metrics) and grown.endswith(b"\n")  # appended whole rows only


def test_atomic_writes_keep_the_earlier_file(tmpfs):
    target = tmpfs.folder / "result.json"
    target.write_text("earlier")
    tmpfs.run_out_of_room()
    with pytest.raises(WriteFailed, match=f"^{target}: cannot write: No space left on device$") as failed:
        atomic_write_text(target, "x" * (2 * ROOM))
    assert failed.value.exit_code == 1
    with pytest.raises(WriteFailed, match=f"^{tmpfs.folder / 'a.wav'}: cannot write: No space left on device$"):
        write_audio(tmpfs.folder / "a.wav", np.zeros(16000, np.float32))
    with pytest.raises(WriteFailed, match=f"^{tmpfs.folder / 'c.ckpt'}: cannot write: No space left on device$"):
        save_checkpoint_file({"w": torch.zeros(10_000)}, tmpfs.folder / "c.ckpt")
    assert target.read_text() == "earlier"
    assert sorted(p.name for p in tmpfs.folder.iterdir()) == ["filler", "result.json"]


def test_a_read_only_folder_is_named_with_its_reason(tmpfs):
    target = tmpfs.folder / "report.md"
    target.write_text("earlier")
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs.folder)], check=True)
    with pytest.raises(WriteFailed, match=f"^{target}: cannot write: Read-only file system$"):
        atomic_write_text(target, "new")
    assert target.read_text() == "earlier"


def test_an_append_is_whole_or_not_at_all(tmpfs):
    log = tmpfs.folder / "metrics.csv"
    log.write_bytes(b"step,loss\r\n1,0.5\r\n")
    tmpfs.run_out_of_room()
    with pytest.raises(WriteFailed, match=f"^{log}: cannot write: No space left on device$"):
        append_whole(log, b"2,0.4\r\n" * ROOM)
    assert log.read_bytes() == b"step,loss\r\n1,0.5\r\n"  # no half row for the next append to join
    append_whole(log, b"2,0.4\r\n")
    assert log.read_bytes().endswith(b"1,0.5\r\n2,0.4\r\n")


def test_metrics_csv_on_a_full_disk(tmpfs):
    """New rows are appended whole (above); a new column rewrites the file, atomically."""
    logger = MetricsCSVLogger(tmpfs.folder, name="csv", version="")
    for step in range(2000):
        logger.log_metrics({"loss": 0.5}, step=step)
    logger.save()
    path = tmpfs.folder / "csv" / "metrics.csv"
    before = path.read_bytes()
    assert len(before) > ROOM
    tmpfs.run_out_of_room()
    logger.log_metrics({"loss": 0.5, "a_new_column": 1.0}, step=2000)
    with pytest.raises(WriteFailed, match=f"^{path}: cannot write: No space left on device$"):
        logger.save()
    assert path.read_bytes() == before and sorted(p.name for p in path.parent.iterdir()) == ["metrics.csv"]


def test_tensorboard_events_on_a_full_disk_are_one_error(tmpfs, capfd):
    """TensorBoard writes from a thread of its own: no traceback from it, the next call names the file."""
    logger = EventsLogger(tmpfs.folder, name="tensorboard", version="")
    logger.log_metrics({"loss": 0.5}, step=0)
    tmpfs.run_out_of_room()
    with pytest.raises(WriteFailed, match=r"/tensorboard/events\.out\.tfevents\.[^:]+: cannot write: No space left"):
        for step in range(1, 20_000):
            logger.log_metrics({"a/long/name/for/room": float(step)}, step=step)
        logger.finalize("success")
    assert "Traceback" not in capfd.readouterr().err
