"""Frame-by-frame inference of causal networks: the per-hop step and the streaming engine.

:class:`CausalStep` runs one STFT frame through a causal network with all of its memory
passed in and out as a flat tuple of tensors, so the same module runs eagerly in PyTorch
and exports to ONNX (``sekd.export``). The network supplies the step
(:meth:`sekd.models.EnhancementNetwork.streaming_step`: DPDCRN's in
``models/dpdcrn_step.py``, GTCRN's in ``models/gtcrn.py``); it owns no weights of its own,
so there is one model.

:class:`StreamingEnhancer` wraps the step with the signal path: it takes audio in pushes
of any size, frames it exactly as the offline ``torch.stft(center=True)`` does (reflection
at both ends of the stream), overlap-adds the inverse frames with the same window-envelope
division as ``torch.istft``, and returns as many samples as it was given, delayed by a
fixed :attr:`~StreamingEnhancer.latency` of ``n_fft - 1`` samples. After :meth:`flush`,
the concatenated output minus the first ``latency`` samples is the offline model's output
for the whole stream (``model(audio)``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import signal as sig
from .audio import SAMPLE_RATE, read_audio, write_audio
from .checkpoint import load_enhancer
from .errors import SekdError
from .models import EnhancementNetwork, SpeechEnhancer

CACHE_SECONDS = 4.0  # attention memory for models without a look-back: the paper-scale training crop


def require_causal(net: EnhancementNetwork, where: str = "this model") -> None:
    if not net.causal:
        raise SekdError(f"{where}: the model is not causal (built with causal=False, config model.causal=false), "
                        "so it cannot run frame by frame; train a causal model (model.causal=true)")


def algorithmic_latency(cfg: sig.SignalConfig) -> int:
    """Samples between an input sample and the output sample it finishes: one window minus the sample itself.

    Output sample n needs every frame that overlaps it; the last one ends n_fft - 1 samples
    after n when (n + n_fft/2) falls on a frame boundary (the worst case, hence the fixed delay).
    """
    return cfg.n_fft - 1


def attention_cache_frames(net: EnhancementNetwork, hop: int, cache_seconds: float = CACHE_SECONDS) -> int:
    """Frames each time-path attention keeps, the current one included (DPDCRN: the look-back, or
    ``cache_seconds``; 0 for a network without attention over time)."""
    return net.attention_cache_frames(hop, cache_seconds)


class CausalStep(nn.Module):
    """One hop of any causal network: ``(feats [B, 2M, 1, F], *state) -> (mask [B, 2, 1, F], *new_state)``.

    The network's own :meth:`~sekd.models.EnhancementNetwork.streaming_step` does the work;
    ``state_names()`` and ``initial_state(batch, bins)`` describe the flat state tuple.
    """

    def __init__(self, net: EnhancementNetwork, cache_frames: int):
        super().__init__()
        require_causal(net)
        self.impl = net.streaming_step(cache_frames)

    def state_names(self) -> list[str]:
        return self.impl.state_names()

    def initial_state(self, batch: int = 1, bins: int = 257) -> tuple[torch.Tensor, ...]:
        return self.impl.initial_state(batch, bins)

    def forward(self, feats: torch.Tensor, *state: torch.Tensor):
        return self.impl(feats, *state)

class TorchRunner:
    """Runs :class:`CausalStep` eagerly in PyTorch, holding the state between calls."""

    def __init__(self, step: CausalStep, bins: int):
        self.step = step
        self.bins = bins
        self.reset()

    def reset(self) -> None:
        self.state = self.step.initial_state(1, self.bins)

    def __call__(self, feats: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            mask, *self.state = self.step(feats, *self.state)
        return mask


class OnnxRunner:
    """Runs the exported step (``sekd.export``) in onnxruntime, holding the state between calls."""

    def __init__(self, onnx_model: bytes | str, initial_state: tuple[torch.Tensor, ...], threads: int | None = 1):
        import onnxruntime as ort
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        where = onnx_model if isinstance(onnx_model, str) else "the exported ONNX model"
        try:
            self.session = ort.InferenceSession(onnx_model, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable files
            raise SekdError(f"{where}: cannot load the ONNX model ({exc})") from None
        inputs = self.session.get_inputs()
        self.feeds_names = [i.name for i in inputs]
        self.initial = [s.numpy() for s in initial_state]
        if [list(i.shape) for i in inputs[1:]] != [list(s.shape) for s in self.initial]:
            raise SekdError(f"{where}: its state shapes do not fit this checkpoint (exported from another model, "
                            "or with another cache length)")
        self.reset()

    def reset(self) -> None:
        self.state = [s.copy() for s in self.initial]

    def __call__(self, feats: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, dict(zip(self.feeds_names, [feats.numpy(), *self.state])))
        self.state = out[1:]
        return torch.from_numpy(out[0])


class StreamingEnhancer:
    """Enhance a stream pushed in pieces of any size; output = input delayed by :attr:`latency` samples.

    ``push(audio)`` takes ``[n]`` (mono) or ``[M, n]`` float32 16 kHz samples and returns
    ``n`` enhanced samples; :meth:`flush` ends the stream and returns the last
    ``latency`` samples. The first ``latency`` samples out are the zeros of the delay, so
    ``concatenate(outputs)[latency:]`` equals the offline ``model(audio)`` to float
    rounding. The attention memory is bounded (:func:`attention_cache_frames`): for a model
    trained with a look-back the equality holds for streams of any length; without one it
    holds for the first ``cache_seconds`` (4 s by default, the paper-scale training crop),
    after which attention sees the last ``cache_seconds``, a bounded look-back.

    Edges, as the offline path handles them: the first frame waits for ``n_fft/2 + 1``
    samples to mirror the start of the stream (``center=True`` reflection); ``flush``
    mirrors the end the same way, and a stream shorter than ``n_fft`` is first padded with
    zeros to ``n_fft`` as :func:`sekd.enhance.enhance_array` does.

    ``engine="torch"`` runs the step in PyTorch; ``engine="onnx"`` in onnxruntime, from
    ``onnx_model`` (a file or its bytes) or, when that is None, from an in-memory export.
    """

    def __init__(self, model: SpeechEnhancer, engine: str = "torch", onnx_model: bytes | str | None = None,
                 cache_seconds: float = CACHE_SECONDS, threads: int | None = 1):
        self.cfg = model.signal
        if self.cfg.hop > self.cfg.n_fft // 2:
            raise SekdError(f"streaming needs hop <= n_fft/2 (got hop {self.cfg.hop}, n_fft {self.cfg.n_fft})")
        self.channels = model.in_channels
        self.ref_channel = model.ref_channel
        step = CausalStep(model.network, attention_cache_frames(model.network, self.cfg.hop, cache_seconds))
        if engine == "torch":
            self.runner = TorchRunner(step, self.cfg.bins)
        elif engine == "onnx":
            if onnx_model is None:
                from .export import export_step
                onnx_model = export_step(model, cache_seconds=cache_seconds)
            self.runner = OnnxRunner(onnx_model, step.initial_state(1, self.cfg.bins), threads)
        else:
            raise SekdError(f"unknown streaming engine {engine!r}; choose torch or onnx")
        self.engine = engine
        self.window = sig._window(self.cfg, "cpu")
        self.window_sq = (self.window ** 2).numpy()
        self.reset()

    @property
    def latency(self) -> int:
        """Algorithmic latency in samples: output sample n leaves with the push that brings input n + latency."""
        return algorithmic_latency(self.cfg)

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency / SAMPLE_RATE

    def reset(self) -> None:
        """Start a new stream (all state back to zero)."""
        self.runner.reset()
        n_fft = self.cfg.n_fft
        self._received = 0                                           # input samples pushed so far
        self._emitted = 0                                            # output samples returned so far
        self._pending = np.zeros((self.channels, 0), np.float32)     # padded input not yet framed
        self._started = False                                        # start mirrored in yet?
        self._ola = np.zeros(n_fft, np.float32)                      # overlap-add of the current frame span
        self._env = np.zeros(n_fft, np.float32)                      # and of the squared window
        self._ready = [np.zeros(self.latency, np.float32)]           # finished output, the delay first
        self._ready_len = self.latency
        self._to_skip = n_fft // 2                                   # finished samples that fall in the start pad
        self._tail = np.zeros((self.channels, 0), np.float32)        # last n_fft/2 + 1 inputs, to mirror the end

    def _check(self, audio) -> np.ndarray:
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim == 1:
            audio = audio[None]
        if audio.ndim != 2 or audio.shape[0] != self.channels:
            raise SekdError(f"the model takes {self.channels} channel(s); got audio of shape {audio.shape}")
        return audio

    def push(self, audio) -> np.ndarray:
        """Feed ``[n]`` or ``[M, n]`` samples; returns ``n`` output samples."""
        audio = self._check(audio)
        self._feed(audio)
        return self._take(audio.shape[1])

    def flush(self) -> np.ndarray:
        """End the stream: mirror its end, finish the last frames, return the remaining ``latency`` samples.

        The engine is then reset for a new stream.
        """
        n_fft, half = self.cfg.n_fft, self.cfg.n_fft // 2
        total = self._received
        if total == 0:
            self.reset()
            return np.zeros(0, np.float32)
        if total < n_fft:  # as enhance_array: zeros up to one window
            self._feed(np.zeros((self.channels, n_fft - total), np.float32))
        self._feed(self._tail[:, -2:-half - 2:-1], end=True)  # reflection of the last n_fft/2 samples
        # No more frames: everything overlap-added so far is final.
        self._finish(n_fft)
        out = self._take(total + self.latency - self._emitted)
        self.reset()
        return out

    def _feed(self, audio: np.ndarray, end: bool = False) -> None:
        n_fft, hop, half = self.cfg.n_fft, self.cfg.hop, self.cfg.n_fft // 2
        if not end:
            self._received += audio.shape[1]
            self._tail = np.concatenate([self._tail, audio], axis=1)[:, -(half + 1):]
        self._pending = np.concatenate([self._pending, audio], axis=1)
        if not self._started:
            if self._pending.shape[1] <= half:
                return
            self._pending = np.concatenate([self._pending[:, half:0:-1], self._pending], axis=1)
            self._started = True
        start = 0
        while self._pending.shape[1] - start >= n_fft:
            self._frame(self._pending[:, start:start + n_fft])
            self._finish(hop)
            start += hop
        if start:
            self._pending = self._pending[:, start:]

    def _frame(self, frame: np.ndarray) -> None:
        """One STFT frame through the network; its inverse is overlap-added."""
        cfg = self.cfg
        spec = torch.fft.rfft(torch.from_numpy(frame) * self.window)[None, :, None]   # (1, M, 1, F)
        mask = self.runner(sig.features(spec, cfg))
        enhanced = sig.apply_polar_mask(mask, spec[:, self.ref_channel])             # (1, 1, F)
        self._ola += (torch.fft.irfft(enhanced[0, 0], n=cfg.n_fft) * self.window).numpy()
        self._env += self.window_sq

    def _finish(self, count: int) -> None:
        """Move the first ``count`` overlap-added samples, now final, to the output queue."""
        done = self._ola[:count] / np.where(self._env[:count] > 1e-11, self._env[:count], 1.0)
        self._ola = np.concatenate([self._ola[count:], np.zeros(count, np.float32)])
        self._env = np.concatenate([self._env[count:], np.zeros(count, np.float32)])
        skip = min(self._to_skip, count)
        self._to_skip -= skip
        if skip < count:
            self._ready.append(done[skip:])
            self._ready_len += count - skip

    def _take(self, count: int) -> np.ndarray:
        if count > self._ready_len:  # cannot happen with latency n_fft - 1; guards the arithmetic above
            raise RuntimeError(f"streaming: {count} samples asked, {self._ready_len} ready")
        ready = np.concatenate(self._ready) if len(self._ready) != 1 else self._ready[0]
        out, rest = ready[:count], ready[count:]
        self._ready, self._ready_len = [rest], rest.shape[0]
        self._emitted += count
        return out


def stream_array(streamer: StreamingEnhancer, audio: np.ndarray, block: int | None = None) -> np.ndarray:
    """Enhance ``[M, N]`` (or ``[N]``) audio through ``streamer`` in blocks; returns ``[N]`` aligned with the input."""
    audio = streamer._check(audio)
    block = block or streamer.cfg.hop
    out = [streamer.push(audio[:, i:i + block]) for i in range(0, audio.shape[1], block)]
    out.append(streamer.flush())
    return np.concatenate(out)[streamer.latency:]


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


def stream_file(streamer: StreamingEnhancer, src: str, dst: str, block: int | None = None) -> int:
    """Stream ``src`` to ``dst``; ``-`` is raw 16 kHz 16-bit PCM on standard input / output.

    Raw input is processed as it arrives and raw output is written (and flushed) after every
    block, so the command can sit in a pipe. A WAV output is 16 kHz, written atomically at
    the end. The output is aligned with the input (the first ``latency`` samples of the
    engine, the delay, are dropped) and has its length. Returns the number of samples.
    """
    if src == "-":
        blocks = _raw_blocks(sys.stdin.buffer, streamer.channels)
    else:
        audio, _ = read_audio(src)
        if audio.shape[0] != streamer.channels:
            raise SekdError(f"{src}: has {audio.shape[0]} channel(s) but the model takes {streamer.channels}")
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
