"""GTCRN, the ultra-light student: size, causality, streaming = offline, ONNX parity."""

import numpy as np
import onnx
import pytest
import torch

from sekd.checkpoint import load_enhancer, save_enhancer
from sekd.cli import main
from sekd.enhance import enhance_array
from sekd.errors import SekdError
from sekd.export import export_step
from sekd.models import GTCRN, SpeechEnhancer, build_enhancer
from sekd.models.gtcrn import erb_band_maps, erb_weights
from sekd.profile import count_macs, macs_per_second
from sekd.step import CausalStep
from sekd.streaming import StreamingEnhancer

from conftest import speechlike
from test_streaming import assert_step_by_step_equals_whole_sequence, one_thread, push_in_random_pieces  # noqa: F401


def with_running_statistics(model):
    """Eval mode with non-trivial BatchNorm statistics, so that tests see what a trained model does."""
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("preset, params", [("gtcrn", 23_890), ("gtcrn-l", 47_642)])
def test_size_and_macs_are_ultra_light(preset, params):
    """The paper reports 23.7 k parameters and 33 M MAC/s; NSNet2 needs 0.27 G, RNNoise 0.29 G."""
    model = build_enhancer(preset)
    assert sum(p.numel() for p in model.parameters()) == params
    macs = macs_per_second(model)
    assert 20e6 < macs < 0.1e9


def test_band_merge_keeps_low_bins_and_splits_back_smoothly():
    w = erb_weights(257, 65, 64)
    torch.testing.assert_close(w.sum(0), torch.ones(192, dtype=w.dtype))  # every high bin fully covered
    merge, split = erb_band_maps(257, 65, 64)
    x = torch.randn(2, 3, 257)
    merged = merge(x)
    assert merged.shape == (2, 3, 129) and torch.equal(merged[..., :65], x[..., :65])
    flat = torch.full((1, 257), 0.7)
    torch.testing.assert_close(split(merge(flat)), flat)  # a flat spectrum survives the round trip
    assert count_macs(merge, torch.randn(1, 3, 10, 257)) == 3 * 10 * 64 * 192  # one product per band and bin


def test_the_network_ignores_the_future():
    net = with_running_statistics(GTCRN(channels=8, layers=1))
    feats = torch.randn(1, 2, 30, 257)
    changed = feats.clone()
    changed[:, :, 17:] = torch.randn_like(changed[:, :, 17:])
    with torch.no_grad():
        _, a = net(feats, return_taps=True)
        _, b = net(changed, return_taps=True)
    for name in a:
        torch.testing.assert_close(a[name][:, :, :17], b[name][:, :, :17], msg=name)
        assert not torch.allclose(a[name][:, :, 17:], b[name][:, :, 17:]), name


def test_step_by_step_equals_the_whole_sequence():
    net = with_running_statistics(GTCRN(channels=8, layers=2))
    assert_step_by_step_equals_whole_sequence(CausalStep(net, cache_frames=0), net, torch.randn(2, 2, 25, 257), 1e-5)


@pytest.mark.parametrize("in_channels", [1, 2])
def test_streaming_in_random_pieces_equals_the_offline_model(in_channels):
    model = with_running_statistics(build_enhancer("gtcrn", in_channels=in_channels))
    audio = np.random.default_rng(1).standard_normal((in_channels, 8123)).astype(np.float32) * 0.1
    audio[0] += np.resize(speechlike(1.0), 8123)
    offline = enhance_array(model, audio)
    out = push_in_random_pieces(StreamingEnhancer(model), audio)
    assert np.abs(out[511:] - offline).max() < 1e-4
    assert np.abs(offline).max() > 1e-3


def test_onnx_export_matches_pytorch(tmp_path):
    model = with_running_statistics(build_enhancer("gtcrn"))
    path = tmp_path / "gtcrn.onnx"
    export_step(model, path)
    names = CausalStep(model.network, 0).state_names()
    graph = onnx.load(path).graph
    assert [i.name for i in graph.input] == ["feats", *names]
    assert [o.name for o in graph.output] == ["mask", *(f"new_{n}" for n in names)]
    audio = speechlike(1.0, seed=2)[None] + 0.05 * np.random.default_rng(0).standard_normal((1, 16000)).astype(
        np.float32)
    torch_out = push_in_random_pieces(StreamingEnhancer(model, engine="torch"), audio)
    onnx_out = push_in_random_pieces(StreamingEnhancer(model, engine="onnx", onnx_model=str(path)), audio, seed=1)
    assert np.abs(onnx_out - torch_out).max() < 1e-4
    assert np.abs(torch_out).max() > 1e-3


def test_cli_streams_and_exports_a_gtcrn_checkpoint(tmp_path, capsys):
    import soundfile as sf
    ckpt = tmp_path / "gtcrn.ckpt"
    save_enhancer(with_running_statistics(build_enhancer("gtcrn")), ckpt)
    noisy = tmp_path / "noisy.wav"
    sf.write(noisy, speechlike(0.8), 16000)
    assert main(["export", "--ckpt", str(ckpt), "-o", str(tmp_path / "m.onnx")]) == 0
    assert main(["stream", "--ckpt", str(ckpt), "--onnx", str(tmp_path / "m.onnx"), str(noisy),
                 "-o", str(tmp_path / "out.wav")]) == 0
    streamed = sf.read(tmp_path / "out.wav", dtype="int16")[0].astype(int)
    offline = enhance_array(load_enhancer(ckpt), sf.read(noisy, dtype="float32")[0][None])
    assert np.abs(streamed - np.rint(np.clip(offline, -1, 1) * 32767)).max() <= 2
    assert main(["profile", "--ckpt", str(ckpt), "--seconds", "0.5"]) == 0
    assert "GTCRN width 16, 2 dual-path GRU layer(s)" in capsys.readouterr().out


def test_other_stft_sizes_are_refused_with_the_fix():
    """A preset follows n_fft (tests/test_low_latency.py); a network built for 512 is refused 256's bins."""
    model = SpeechEnhancer(network=build_enhancer("gtcrn").network, signal_args={"n_fft": 256, "hop": 128})
    with pytest.raises(SekdError, match="built for 257 STFT bins.*bins=129, erb_low=33, erb_bands=32 or use"):
        model(torch.randn(1, 4000))


def test_shipped_configs_train_and_distil_the_same_student():
    from sekd.config import load_config
    from sekd.engine.module import build_model
    plain, distilled = load_config("configs/gtcrn.yaml"), load_config("configs/gtcrn-distill.yaml")
    assert isinstance(build_model(plain).network, GTCRN)
    assert distilled.extra["distill"]["method"] == "i2s_tfckd"
    differ = {k for k, v in plain.to_dict()["train"].items() if distilled.to_dict()["train"][k] != v}
    assert differ == {"out_dir"} and plain.to_dict()["data"] == distilled.to_dict()["data"]
