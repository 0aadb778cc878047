"""Frame-by-frame inference of causal networks: the streaming engine behind ``sekd stream``.

:class:`StreamingEnhancer` runs a causal checkpoint's per-hop step (:class:`sekd.step.CausalStep`)
in PyTorch, or its ONNX export (:mod:`sekd.export`) in onnxruntime, inside the frame-exact
STFT / iSTFT of :class:`sekd.runtime.OverlapAddStreamer`: audio in pushes of any size, as
many samples out, delayed by a fixed :attr:`~StreamingEnhancer.latency` of ``n_fft - 1``
samples. After :meth:`~StreamingEnhancer.flush`, the concatenated output minus the first
``latency`` samples is the offline model's output for the whole stream (``model(audio)``).
The torch-free engine for an exported file alone is :class:`sekd.runtime.OnnxStreamer`.

Imports go one way: ``step`` (the per-hop module) <- ``export`` (its ONNX graph) <- this
module; ``runtime`` (numpy framing, onnxruntime sessions) is imported by both and imports
neither.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from . import signal as sig
from .audio import SAMPLE_RATE, read_audio, write_audio
from .checkpoint import load_enhancer
from .errors import SekdError
from .export import FEATS_INPUT, MASK_OUTPUT, export_step, state_output
from .models import SpeechEnhancer
from .runtime import OnnxStep, OverlapAddStreamer, algorithmic_latency, apply_polar_mask, enhance_spectrum, \
    features, read_stream_format, step_session, stream_array
from .step import CACHE_SECONDS, CausalStep, attention_cache_frames, require_causal

__all__ = ["StreamingEnhancer", "StreamedModel", "load_streamer", "stream_file", "stream_array",
           "algorithmic_latency", "CACHE_SECONDS"]


class TorchRunner:
    """One frame in PyTorch: :class:`CausalStep` with the state held between calls, inside the runtime's numpy
    signal path (:func:`sekd.runtime.features`, :func:`sekd.runtime.apply_polar_mask`; tested equal to
    :mod:`sekd.signal`): a dozen numpy calls cost less than the same work as small torch operators."""

    def __init__(self, step: CausalStep, cfg: sig.SignalConfig, ref_channel: int, channels: int):
        self.initial_state = step.initial_state
        self.step = step.frozen(channels, cfg.bins)  # GTCRN's: a frozen TorchScript graph (CausalStep.frozen)
        self.cfg, self.ref_channel = cfg, ref_channel
        self.reset()

    def reset(self) -> None:
        self.state = self.initial_state(1, self.cfg.bins)

    def enhance(self, spec: np.ndarray) -> np.ndarray:
        """Spectra ``[M, F]`` -> enhanced spectrum ``[F]``."""
        # A new array each frame, not a reused buffer: a step may keep its input in its state.
        feats = torch.from_numpy(features(spec, self.cfg.compress))
        with torch.inference_mode():
            mask, *self.state = self.step(feats, *self.state)
        return apply_polar_mask(mask.numpy()[0, :, 0], spec[self.ref_channel])


class OnnxRunner:
    """One frame in onnxruntime: the exported step (``sekd.export``) with the runtime's numpy signal path.

    The numpy path (:func:`sekd.runtime.enhance_spectrum`, tested equal to :mod:`sekd.signal`)
    costs a fraction of a frame's worth of small torch calls. The checkpoint's step gives
    the state's names and start values, so a file exported before the graph carried
    metadata still runs; a file whose metadata names another signal path (STFT size, hop,
    window, compression) than the checkpoint's is refused.
    """

    def __init__(self, onnx_model: bytes | str, step: CausalStep, cfg: sig.SignalConfig, ref_channel: int,
                 threads: int | None = 1):
        where = onnx_model if isinstance(onnx_model, str) else "the exported ONNX model"
        session = step_session(onnx_model, threads, where)
        if any(k.startswith("sekd.") for k in session.get_modelmeta().custom_metadata_map):
            fmt = read_stream_format(session, where)
            window = sig._window(cfg, "cpu").numpy()
            if (fmt.n_fft, fmt.hop, fmt.compress) != (cfg.n_fft, cfg.hop, cfg.compress) or \
                    not np.array_equal(np.asarray(fmt.window, np.float32), window):
                raise SekdError(f"{where}: exported for n_fft {fmt.n_fft}, hop {fmt.hop}, {fmt.window_name} window, "
                                f"compression {fmt.compress}; the checkpoint uses n_fft {cfg.n_fft}, hop {cfg.hop}, "
                                f"{cfg.window} window, compression {cfg.compress}")
        states = [(name, state_output(name), start.numpy())
                  for name, start in zip(step.state_names(), step.initial_state(1, cfg.bins))]
        self.step = OnnxStep(session, FEATS_INPUT, MASK_OUTPUT, states, where)
        self.compress, self.ref_channel = cfg.compress, ref_channel

    def reset(self) -> None:
        self.step.reset()

    def enhance(self, spec: np.ndarray) -> np.ndarray:
        return enhance_spectrum(self.step, spec, self.compress, self.ref_channel)


class StreamingEnhancer(OverlapAddStreamer):
    """Enhance a stream pushed in pieces of any size with a causal model; output = input delayed by :attr:`latency`.

    ``push(audio)`` takes ``[n]`` (mono) or ``[M, n]`` float32 16 kHz samples and returns
    ``n`` enhanced samples; :meth:`flush` ends the stream and returns the last ``latency``
    samples (framing and edges: :class:`sekd.runtime.OverlapAddStreamer`).
    ``concatenate(outputs)[latency:]`` equals the offline ``model(audio)`` to float
    rounding. The attention memory is bounded (:func:`sekd.step.attention_cache_frames`):
    for a model trained with a look-back the equality holds for streams of any length;
    without one it holds for the first ``cache_seconds`` (4 s by default, the paper-scale
    training crop), after which attention sees the last ``cache_seconds``, a bounded look-back.

    ``engine="torch"`` runs the step in PyTorch (a traceable one, GTCRN's, as a frozen
    TorchScript graph: :meth:`sekd.step.CausalStep.frozen`); ``engine="onnx"`` runs it in onnxruntime, from
    ``onnx_model`` (a file or its bytes) or, when that is None, from an in-memory export,
    as :class:`sekd.runtime.OnnxStreamer` does. Both run each frame's features and mask with
    the runtime's numpy signal path.
    """

    def __init__(self, model: SpeechEnhancer, engine: str = "torch", onnx_model: bytes | str | None = None,
                 cache_seconds: float = CACHE_SECONDS, threads: int | None = 1):
        self.cfg = model.signal
        self.ref_channel = model.ref_channel
        step = CausalStep(model.network, attention_cache_frames(model.network, self.cfg.hop, cache_seconds))
        if engine == "torch":
            self.runner = TorchRunner(step, self.cfg, self.ref_channel, model.in_channels)
        elif engine == "onnx":
            if onnx_model is None:
                onnx_model = export_step(model, cache_seconds=cache_seconds)
            self.runner = OnnxRunner(onnx_model, step, self.cfg, self.ref_channel, threads)
        else:
            raise SekdError(f"unknown streaming engine {engine!r}; choose torch or onnx")
        self.engine = engine
        super().__init__(self.cfg.n_fft, self.cfg.hop, sig._window(self.cfg, "cpu").numpy(), model.in_channels,
                         SAMPLE_RATE)

    def reset(self) -> None:
        """Start a new stream (all state back to zero)."""
        self.runner.reset()
        super().reset()

    def enhance_frame(self, spec: np.ndarray) -> np.ndarray:
        return self.runner.enhance(spec)


class StreamedModel:
    """Stands in for a SpeechEnhancer in :func:`sekd.enhance.enhance_array`: each call streams one signal.

    Lets ``sekd enhance --stream`` reuse the file handling of ``sekd.enhance`` (formats,
    sample rates, per-file errors) with the streaming engine doing the enhancement.
    """

    def __init__(self, streamer: StreamingEnhancer):
        self.streamer = streamer
        self.signal = streamer.cfg
        self.in_channels = streamer.channels

    def __call__(self, noisy: torch.Tensor) -> torch.Tensor:  # (1, M, N) -> (1, N)
        return torch.from_numpy(stream_array(self.streamer, noisy[0].numpy()))[None]


def load_streamer(ckpt: str | Path, engine: str = "torch", onnx_model: str | None = None,
                  cache_seconds: float = CACHE_SECONDS) -> StreamingEnhancer:
    """A :class:`StreamingEnhancer` for a checkpoint; a non-causal checkpoint is refused with its path."""
    model = load_enhancer(ckpt)
    require_causal(model.network, str(ckpt))
    if onnx_model is not None and not Path(onnx_model).is_file():
        raise SekdError(f"{onnx_model}: ONNX model not found")
    return StreamingEnhancer(model, engine=engine, onnx_model=onnx_model, cache_seconds=cache_seconds)


RAW_DTYPE = "<i2"  # raw PCM on pipes: 16-bit little-endian, channels interleaved, 16 kHz


def _raw_blocks(stream, channels: int, block_bytes: int = 4096):
    """``[M, n]`` float blocks from raw PCM as it arrives (``read1`` returns what is there, without waiting)."""
    frame = 2 * channels
    leftover = b""
    read = getattr(stream, "read1", stream.read)
    while data := read(block_bytes):
        data = leftover + data
        usable = len(data) - len(data) % frame
        leftover = data[usable:]
        if usable:
            yield np.frombuffer(data[:usable], RAW_DTYPE).reshape(-1, channels).T.astype(np.float32) / 32768.0
    if leftover:
        raise SekdError("standard input: the raw stream ends in the middle of a sample (16-bit PCM expected)")


def _to_raw(audio: np.ndarray) -> bytes:
    return np.rint(np.clip(audio, -1.0, 1.0) * 32767.0).astype(RAW_DTYPE).tobytes()


def stream_file(streamer: StreamingEnhancer, src: str, dst: str, block: int | None = None,
                downmix: bool = False) -> int:
    """Stream ``src`` to ``dst``; ``-`` is raw 16 kHz 16-bit PCM on standard input / output.

    Raw input is processed as it arrives and raw output is written (and flushed) after every
    block, so the command can sit in a pipe. A WAV output is 16 kHz, written atomically at
    the end. The output is aligned with the input (the first ``latency`` samples of the
    engine, the delay, are dropped) and has its length. Returns the number of samples.
    A one-channel model streams each channel of a multi-channel file on its own and keeps
    the channels, or with ``downmix`` their mean (:func:`sekd.enhance.model_inputs`).
    """
    from .enhance import check_downmix, model_inputs
    check_downmix(streamer.channels, downmix)
    if src == "-":
        blocks = _raw_blocks(sys.stdin.buffer, streamer.channels)
    else:
        inputs = model_inputs(read_audio(src)[0], streamer.channels, src, downmix)
        if len(inputs) > 1:  # the channels one after another, each a stream of its own (the file is all there)
            enhanced = np.stack([stream_array(streamer, x, block) for x in inputs])
            if dst == "-":
                sys.stdout.buffer.write(_to_raw(enhanced.T))  # channels interleaved
                sys.stdout.buffer.flush()
            else:
                write_audio(dst, enhanced)
            return enhanced.shape[1]
        audio = inputs[0]
        step = block or streamer.cfg.hop
        blocks = (audio[:, i:i + step] for i in range(0, audio.shape[1], step))
    to_drop, total, kept = streamer.latency, 0, []
    out = sys.stdout.buffer if dst == "-" else None

    def emit(enhanced: np.ndarray) -> None:
        nonlocal to_drop
        drop = min(to_drop, enhanced.shape[0])
        to_drop -= drop
        enhanced = enhanced[drop:]
        if out is None:
            kept.append(enhanced)
        elif enhanced.size:
            out.write(_to_raw(enhanced))
            out.flush()

    for chunk in blocks:
        total += chunk.shape[1]
        emit(streamer.push(chunk))
    emit(streamer.flush())
    if out is None:
        write_audio(dst, np.concatenate(kept) if kept else np.zeros(0, np.float32))
    return total
