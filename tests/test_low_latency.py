"""The low-latency option: students with a 256-sample window and 128-sample hop (signal 256/128, 15.94 ms).

GTCRN's band layout follows n_fft; streaming, ONNX export and the torch-free runtime carry the
setting; a 512/256 teacher distils into a 256/128 student through the STFT bridge.
"""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sekd import signal as sig
from sekd.checkpoint import load_enhancer, save_enhancer
from sekd.cli import main
from sekd.config import load_config
from sekd.distill import TapInfo, build_method, list_methods
from sekd.distill.bridge import STFTBridge, frames_at, same_grid
from sekd.engine.module import build_model
from sekd.enhance import enhance_array
from sekd.errors import SekdError
from sekd.export import export_step
from sekd.models import GTCRN, build_enhancer
from sekd.models.gtcrn import erb_band_maps
from sekd.runtime import OnnxStreamer, stream_array
from sekd.streaming import StreamingEnhancer

from conftest import speechlike
from test_gtcrn import with_running_statistics
from test_streaming import one_thread, push_in_random_pieces  # noqa: F401  (autouse fixture)

ROOT = Path(__file__).resolve().parents[1]
LOW = {"n_fft": 256, "hop": 128}
BATCH, SAMPLES = 2, 2048          # teacher 9 frames (hop 256), student 17 (hop 128)
NAMES = [name for name, _ in list_methods()]
SMALL = {"i2s_tfckd": {"fusion_channels": 8}, "reviewkd": {"mid_channels": 8}}


def noisy_audio(length: int = 12000, seed: int = 0) -> np.ndarray:
    audio = np.resize(speechlike(1.0, seed=seed), length)[None]
    return audio + 0.05 * np.random.default_rng(seed).standard_normal((1, length)).astype(np.float32)


def low_gtcrn(**overrides):
    torch.manual_seed(0)
    return with_running_statistics(build_enhancer("gtcrn", signal_args=LOW, **overrides))


# -- GTCRN at 256/128 ---------------------------------------------------------------------------
def test_gtcrn_band_layout_follows_n_fft():
    low = build_enhancer("gtcrn", signal_args=LOW).network
    assert {k: low.args[k] for k in ("bins", "erb_low", "erb_bands")} == {"bins": 129, "erb_low": 33, "erb_bands": 32}
    # At 512 the preset is the authors' layout, the constructor's defaults, bit for bit.
    default = build_enhancer("gtcrn").network
    assert default.args == GTCRN(**{k: default.args[k] for k in ("channels", "layers", "in_channels")}).args
    assert (default.args["bins"], default.args["erb_low"], default.args["erb_bands"]) == (257, 65, 64)
    merge, split = erb_band_maps(257, 65, 64)
    assert torch.equal(default.band_merge.matrix, merge.matrix) and torch.equal(default.band_split.matrix, split.matrix)
    # Each high bin's band weights still sum to one, and every band sees bins, at 129 bins too.
    assert torch.allclose(low.band_split.matrix.sum(1), torch.ones(129 - 33), atol=1e-6)
    assert (low.band_merge.matrix.sum(1) > 0.99).all()


def test_gtcrn_forward_shapes_at_256_128(tmp_path):
    model = low_gtcrn().eval()
    samples = 4000
    with torch.no_grad():
        enhanced, taps = model(torch.randn(2, samples), return_taps=True)
    frames = 1 + samples // 128
    assert enhanced.shape == (2, samples)
    bins = {name: tuple(x.shape) for name, x in taps.items()}
    assert bins["enc1"] == (2, 16, frames, 33) and bins["dec4"] == (2, 16, frames, 33)
    for name in ("enc2", "enc3", "enc4", "enc5", "mid1", "mid2", "dec1", "dec2", "dec3"):
        assert bins[name] == (2, 16, frames, 17), name
    assert bins["dec5"] == bins["out"] == (2, 2, frames, 129)
    # A checkpoint rebuilds the same network from the file alone.
    save_enhancer(model, tmp_path / "low.ckpt")
    again = load_enhancer(tmp_path / "low.ckpt").eval()
    assert again.network.args == model.network.args and again.signal == model.signal


def test_a_causal_dpdcrn_student_works_at_256_128():
    """DPDCRN derives every frequency size from its input: no argument follows n_fft."""
    torch.manual_seed(0)
    model = build_enhancer("tiny", causal=True, signal_args=LOW).eval()
    _, taps = model(torch.randn(1, 4000), return_taps=True)
    assert taps["dec3"].shape == (1, 2, 1 + 4000 // 128, 129)
    audio = noisy_audio(6000)
    streamer = StreamingEnhancer(model)
    out = push_in_random_pieces(streamer, audio)
    assert np.abs(out[streamer.latency:] - enhance_array(model, audio)).max() < 1e-4


# -- streaming, export, runtime -----------------------------------------------------------------
def test_streaming_equals_offline_with_the_low_latency():
    model = low_gtcrn()
    audio = noisy_audio()
    streamer = StreamingEnhancer(model)
    assert streamer.latency == 255 and streamer.latency_ms == pytest.approx(15.94, abs=0.01)
    assert isinstance(streamer.runner.step, torch.jit.ScriptModule)  # the frozen eager step
    out = push_in_random_pieces(streamer, audio)
    offline = enhance_array(model, audio)
    assert np.abs(out[streamer.latency:] - offline).max() < 1e-4
    assert np.abs(offline).max() > 1e-2  # not trivially equal


LOW_MODELS = {"gtcrn": low_gtcrn,
              "dpdcrn-causal": lambda: build_enhancer("tiny", causal=True, lookback=6, signal_args=LOW).eval()}


@pytest.mark.parametrize("kind", LOW_MODELS)
def test_onnx_export_equals_pytorch_and_carries_the_setting(kind, tmp_path):
    torch.manual_seed(0)
    model = LOW_MODELS[kind]()
    path = tmp_path / "low.onnx"
    export_step(model, path)
    runtime = OnnxStreamer(str(path))  # numpy + onnxruntime, everything from the file's metadata
    fmt = runtime.format
    assert (fmt.n_fft, fmt.hop, fmt.bins, len(fmt.window), fmt.latency) == (256, 128, 129, 256, 255)
    np.testing.assert_allclose(fmt.window, sig._window(model.signal, "cpu").numpy(), atol=0)
    audio = noisy_audio(9000, seed=1)
    from_file = stream_array(runtime, audio, block=100)
    eager = stream_array(StreamingEnhancer(model, engine="torch"), audio)
    assert np.abs(from_file - eager).max() < 1e-4
    assert np.abs(from_file - enhance_array(model, audio)).max() < 1e-4


def test_cli_export_stream_and_enhance_follow_the_setting(tmp_path, capsys):
    import soundfile as sf
    ckpt = tmp_path / "low.ckpt"
    model = low_gtcrn(channels=8, layers=1)
    save_enhancer(model, ckpt)
    assert main(["export", "--ckpt", str(ckpt), "-o", str(tmp_path / "low.onnx")]) == 0
    assert "algorithmic latency 255 samples, 15.94 ms" in capsys.readouterr().out
    audio = noisy_audio(8000, seed=2)[0]
    sf.write(tmp_path / "noisy.wav", audio, 16000, subtype="FLOAT")
    assert main(["stream", "--ckpt", str(ckpt), str(tmp_path / "noisy.wav"), "-o", str(tmp_path / "s.wav")]) == 0
    assert main(["enhance", "--ckpt", str(ckpt), str(tmp_path / "noisy.wav"), "-o", str(tmp_path / "e"), "-q"]) == 0
    streamed, _ = sf.read(tmp_path / "s.wav", dtype="float32")
    enhanced, _ = sf.read(tmp_path / "e" / "noisy.wav", dtype="float32")
    offline = enhance_array(model, audio[None])
    assert np.abs(enhanced - offline).max() < 1e-4 and np.abs(streamed - offline).max() < 1e-4


# -- config ------------------------------------------------------------------------------------
def test_config_checks_the_signal_setting(tmp_path):
    cfg = load_config(ROOT / "configs" / "gtcrn-lowlat.yaml")
    assert (cfg.signal.n_fft, cfg.signal.hop) == (256, 128)
    assert build_model(cfg).network.args["bins"] == 129
    with pytest.raises(SekdError, match=r"signal.hop \(512\) must not exceed signal.n_fft \(256\)"):
        load_config(ROOT / "configs" / "gtcrn-lowlat.yaml", ["signal.hop=512"])
    with pytest.raises(SekdError, match="signal.n_fft must be at least 16"):
        load_config(ROOT / "configs" / "gtcrn-lowlat.yaml", ["signal.n_fft=8"])
    # GTCRN's band layout needs n_fft a multiple of 16; the error names the setting.
    with pytest.raises(SekdError, match=r"signal.n_fft: GTCRN needs n_fft a multiple of 16 .*got 200"):
        build_model(load_config(ROOT / "configs" / "gtcrn-lowlat.yaml", ["signal.n_fft=200", "signal.hop=100"]))
    # Streaming needs at least two frames over each sample.
    with pytest.raises(SekdError, match=r"streaming needs hop <= n_fft/2 \(got hop 192, n_fft 256\)"):
        StreamingEnhancer(build_enhancer("gtcrn", signal_args={"n_fft": 256, "hop": 192}).eval())
    # A GTCRN built for another n_fft says which arguments the input's bins need.
    net = build_enhancer("gtcrn").network
    with pytest.raises(SekdError, match="built for 257 STFT bins .* gets 129; build it with bins=129, erb_low=33, "
                                        "erb_bands=32 or use n_fft 512"):
        net(torch.zeros(1, 2, 3, 129))


@pytest.mark.parametrize("low, base", [("gtcrn-lowlat", "gtcrn"), ("gtcrn-lowlat-distill", "gtcrn-distill")])
def test_low_latency_configs_are_their_512_twins_but_for_the_signal(low, base):
    """Same data, model, schedule (and distillation) as the configs the ultra-light study used."""
    low_cfg, base_cfg = (yaml.safe_load((ROOT / "configs" / f"{n}.yaml").read_text()) for n in (low, base))
    assert low_cfg.pop("signal") == LOW and "signal" not in base_cfg
    assert low_cfg["train"].pop("out_dir") != base_cfg["train"].pop("out_dir")
    assert low_cfg == base_cfg


# -- distillation across STFT settings ----------------------------------------------------------
@pytest.fixture(scope="module")
def teacher():
    """A DPDCRN at 512/256, the default STFT, as every trained teacher."""
    torch.manual_seed(2)
    return build_enhancer("tiny", channels=16).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def audio():
    torch.manual_seed(123)
    clean = torch.sin(torch.linspace(0, 300, SAMPLES)).expand(BATCH, SAMPLES) * torch.rand(BATCH, 1)
    return clean + 0.3 * torch.randn(BATCH, SAMPLES), clean


def test_bridge_reads_teacher_frames_at_the_student_frame_centres(teacher, audio):
    noisy, _ = audio
    bridge = STFTBridge(teacher.signal, sig.SignalConfig(**LOW))
    with torch.no_grad():
        wave, taps = teacher(noisy, return_taps=True)
    bridged = bridge(taps, wave)
    for name, x in taps.items():
        if name == "out":
            continue
        y = bridged[name]
        assert y.shape == (*x.shape[:2], 17, x.shape[3])          # student frames, teacher bins
        torch.testing.assert_close(y[:, :, ::2], x, rtol=0, atol=0)  # hop 256 = two student hops
        torch.testing.assert_close(y[:, :, 1:-1:2], (x[:, :, :-1] + x[:, :, 1:]) / 2)
    # The response: the teacher's waveform through the student's STFT.
    spec = sig.stft(wave, bridge.student)
    assert torch.equal(bridged["out"], torch.stack([spec.real, spec.imag], dim=1))
    assert bridged["out"].shape == (BATCH, 2, 17, 129)
    # Positions past the teacher's last frame hold it; other ratios interpolate linearly.
    x = torch.arange(4.0).reshape(1, 1, 4, 1)
    assert frames_at(x, torch.tensor([0.0, 0.5, 2.25, 3.0, 3.5])).flatten().tolist() == [0, 0.5, 2.25, 3, 3]
    assert same_grid(teacher.signal, sig.SignalConfig(compress=0.5))  # compression alone needs no bridge
    assert not same_grid(teacher.signal, sig.SignalConfig(window="hamming"))


@pytest.mark.parametrize("name", NAMES)
def test_every_method_distils_a_512_teacher_into_a_256_student(name, teacher, audio):
    noisy, clean = audio
    torch.manual_seed(0)
    student = build_enhancer("gtcrn", channels=8, layers=1, signal_args=LOW)
    first_layer = student.network.enc1[0].weight
    bridge = STFTBridge(teacher.signal, student.signal)
    student_info = TapInfo.from_enhancer(student, SAMPLES, BATCH)
    teacher_info = bridge.tap_info(TapInfo.from_enhancer(teacher, SAMPLES, BATCH), student_info)
    assert (student_info.frames, teacher_info.frames) == (17, 17)
    method = build_method(name, student_info, teacher_info, SMALL.get(name, {}))
    with torch.no_grad():
        wave, teacher_taps = teacher(noisy, return_taps=True)
    teacher_taps = bridge(teacher_taps, wave)
    enhanced, student_taps = student(noisy, return_taps=True)
    kd, terms = method(student_taps, teacher_taps)
    assert torch.isfinite(kd)
    if name == "none":
        assert kd.item() == 0
        return
    assert kd.item() > 0 and torch.allclose(sum(terms.values()), kd)
    (torch.nn.functional.mse_loss(enhanced, clean) + kd).backward()
    assert first_layer.grad is not None and first_layer.grad.abs().sum() > 0
    assert all(torch.isfinite(p.grad).all() for p in student.parameters() if p.grad is not None)
    for param_name, param in method.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), param_name


def test_sekd_distill_from_a_512_teacher_into_the_low_latency_config(pair_folder, tmp_path):
    """configs/gtcrn-lowlat-distill.yaml, shortened, from a 512/256 DPDCRN teacher checkpoint."""
    torch.manual_seed(0)
    teacher_ckpt = tmp_path / "teacher.ckpt"
    save_enhancer(build_enhancer("tiny", channels=16), teacher_ckpt)
    run = tmp_path / "run"
    assert main(["distill", str(ROOT / "configs" / "gtcrn-lowlat-distill.yaml"), f"data.train={pair_folder}",
                 f"train.out_dir={run}", f"distill.teacher={teacher_ckpt}", "model.channels=8",
                 "distill.options={fusion_channels: 8, checkpoint: false}", "data.batch_size=2",
                 "data.crop_seconds=0.5", "data.valid_files=1", "train.max_steps=2", "train.val_every=2",
                 "train.warmup_steps=1", "train.log_every=1"]) == 0
    model = load_enhancer(run / "checkpoints" / "last.ckpt")
    assert (model.signal.n_fft, model.signal.hop, model.network.args["bins"]) == (256, 128, 129)
    metrics = (run / "csv" / "metrics.csv").read_text().splitlines()
    header = metrics[0].split(",")
    kd = [row.split(",")[header.index("train/kd")] for row in metrics[1:]]
    assert any(v and math.isfinite(float(v)) and float(v) > 0 for v in kd)
    # The study's calibration maps run the teacher through the same bridge.
    from sekd.data.datasets import list_pairs
    from sekd.study import calibration_maps
    maps = calibration_maps(run / "checkpoints" / "last.ckpt", list_pairs(pair_folder, None)[:2])
    weights = torch.tensor(maps["encoder/time"]["weights"])
    assert weights.shape == (5, 3) and torch.allclose(weights.sum(1), torch.ones(5))
