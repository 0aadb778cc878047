"""ONNX export of the per-hop step and the onnxruntime streaming engine."""

import dataclasses

import numpy as np
import onnx
import pytest
import soundfile as sf

from sekd.checkpoint import load_enhancer, save_enhancer
from sekd.cli import main
from sekd.export import export_step
from sekd.models import build_enhancer
from sekd.runtime import OnnxStreamer, stream_array
from sekd.step import CausalStep, attention_cache_frames
from sekd.streaming import StreamingEnhancer

from conftest import speechlike
from test_streaming import one_thread, push_in_random_pieces  # noqa: F401  (autouse fixture)


def test_export_declares_the_state_as_inputs_and_outputs(causal_ckpt, tmp_path):
    model = load_enhancer(causal_ckpt)
    path = tmp_path / "step.onnx"
    data = export_step(model, path)
    assert path.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["causal.ckpt", "step.onnx"]  # no temporary file left
    graph = onnx.load(path).graph
    names = CausalStep(model.network, attention_cache_frames(model.network, model.signal.hop)).state_names()
    assert [i.name for i in graph.input] == ["feats", *names]
    assert [o.name for o in graph.output] == ["mask", *(f"new_{n}" for n in names)]


def test_onnx_engine_matches_pytorch(causal_ckpt):
    model = load_enhancer(causal_ckpt)
    audio = speechlike(1.0, seed=2)[None] + 0.05 * np.random.default_rng(0).standard_normal((1, 16000)).astype(
        np.float32)
    torch_out = push_in_random_pieces(StreamingEnhancer(model, engine="torch"), audio)
    onnx_out = push_in_random_pieces(StreamingEnhancer(model, engine="onnx"), audio, seed=1)
    assert np.abs(onnx_out - torch_out).max() < 1e-3
    assert np.abs(torch_out).max() > 1e-3  # not trivially equal


def test_cli_export_then_stream_with_the_file(causal_ckpt, tmp_path, capsys):
    onnx_path = tmp_path / "model.onnx"
    assert main(["export", "--ckpt", str(causal_ckpt), "-o", str(onnx_path)]) == 0
    assert "511 samples" in capsys.readouterr().out
    noisy = tmp_path / "noisy.wav"
    sf.write(noisy, speechlike(0.8), 16000)
    for extra, name in [(["--onnx", str(onnx_path)], "file.wav"), (["--engine", "onnx"], "memory.wav"),
                        ([], "torch.wav")]:
        assert main(["stream", "--ckpt", str(causal_ckpt), *extra, str(noisy), "-o", str(tmp_path / name)]) == 0
    torch_out = sf.read(tmp_path / "torch.wav", dtype="int16")[0].astype(int)
    for name in ["file.wav", "memory.wav"]:
        assert np.abs(sf.read(tmp_path / name, dtype="int16")[0] - torch_out).max() <= 33  # 1e-3 of full scale


def test_export_refuses_a_non_causal_model(tiny_ckpt, tmp_path, capsys):
    assert main(["export", "--ckpt", str(tiny_ckpt), "-o", str(tmp_path / "m.onnx")]) == 2
    assert "not causal" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_an_onnx_file_of_another_model_is_refused(causal_ckpt, tmp_path, capsys):
    from sekd.models import build_enhancer
    other = tmp_path / "other.onnx"
    export_step(build_enhancer("tiny", causal=True, channels=16), other)
    assert main(["stream", "--ckpt", str(causal_ckpt), "--onnx", str(other), "x.wav", "-o", "y.wav"]) == 2
    assert "do not fit" in capsys.readouterr().err


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference ** 2) / np.sum((other - reference) ** 2)))


@pytest.mark.parametrize("kind", ["dpdcrn", "gtcrn"])
def test_int8_export_streams_from_its_metadata_close_to_float32(kind, causal_ckpt, tmp_path, capsys):
    ckpt = causal_ckpt
    if kind == "gtcrn":
        from test_gtcrn import with_running_statistics
        ckpt = tmp_path / "gtcrn.ckpt"
        save_enhancer(with_running_statistics(build_enhancer("gtcrn")), ckpt)
    fp32, int8 = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    assert main(["export", "--ckpt", str(ckpt), "-o", str(fp32)]) == 0
    assert main(["export", "--ckpt", str(ckpt), "-o", str(int8), "--quantize", "int8"]) == 0
    assert "int8 weights" in capsys.readouterr().out
    ops = {node.op_type for node in onnx.load(int8).graph.node}
    assert "MatMulInteger" in ops and "MatMulInteger" not in {node.op_type for node in onnx.load(fp32).graph.node}
    fmt_fp32, fmt_int8 = (OnnxStreamer(str(p)).format for p in (fp32, int8))
    assert fmt_int8 == dataclasses.replace(fmt_fp32, model=fmt_int8.model) and "int8" in fmt_int8.model
    audio = speechlike(1.0, seed=4) + 0.05 * np.random.default_rng(3).standard_normal(16000).astype(np.float32)
    ref = stream_array(OnnxStreamer(str(fp32)), audio)
    out = stream_array(OnnxStreamer(str(int8)), audio)
    # int8 weights (one scale per tensor) and activations quantised per call add noise 40-50 dB
    # below each product; through the layers, end to end, 26 dB here for the tiny untrained
    # DPDCRN, 36 dB for GTCRN. A wrong scale, transposed weights or a lost state leaves it near 0 dB.
    assert snr_db(ref, out) > 20
    assert snr_db(audio, ref) < 15  # the model changes the signal: the bound is on the enhancement itself
    # sekd stream runs the file with the checkpoint, as the float one.
    noisy = tmp_path / "noisy.wav"
    sf.write(noisy, audio, 16000)
    assert main(["stream", "--ckpt", str(ckpt), "--onnx", str(int8), str(noisy), "-o", str(tmp_path / "o.wav")]) == 0
    assert snr_db(ref, sf.read(tmp_path / "o.wav", dtype="float32")[0]) > 20


def test_export_refuses_an_unknown_quantisation(causal_ckpt, tmp_path, capsys):
    assert main(["export", "--ckpt", str(causal_ckpt), "-o", str(tmp_path / "m.onnx"), "--quantize", "int4"]) == 2
    assert "unknown quantisation 'int4'; choose int8" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
