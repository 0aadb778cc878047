"""Model cost: parameters, MACs per second of audio, and real-time factor on this CPU.

MACs are counted with ptflops (pytorch backend, its default settings), the counter
method.md's size table was made with, on the network (DPDCRN, GTCRN or a user's) for the
input features of one second of 16 kHz audio: 1 + 16000 // hop frames (63 at hop 256). The time-path
attention is quadratic in frames, so longer inputs cost a little more per second; one
second is the convention the published numbers follow. The STFT, the mask and the
inverse STFT are not counted (a few MFLOPs per second).

What ptflops counts for the layers of this model (checked in tests/test_profile.py):
Conv2d and ConvTranspose2d kernel MACs plus one per output element for the bias; GRU
gate matrix products plus 13·hidden element-wise operations per step, twice when
bidirectional; MultiheadAttention projections, both attention products, softmax and
scaling. Norms count one operation per element (two with an affine InstanceNorm or
GroupNorm), PReLU and ReLU one per element (PReLU twice, since both its module and the
functional call are hooked; 0.06 % of the teacher). The causal variant's FrameNorm, the
residual sums and the concatenations are not counted: all element-wise, negligible.
"""

from __future__ import annotations

import statistics
import sys
import time
from contextlib import contextmanager
from typing import Iterator

import torch
from ptflops import get_model_complexity_info
from torch import nn

from . import signal as sig
from .audio import SAMPLE_RATE
from .device import model_device
from .errors import SekdError
from .models import SpeechEnhancer


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Eval mode for the duration (ptflops switches it on and never back)."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def _count_own_macs(module: nn.Module, inputs: tuple, output) -> None:
    module.__flops__ += int(module.count_macs(inputs[0], output))


def count_macs(module: nn.Module, inputs: torch.Tensor) -> int:
    """MACs of ``module(inputs)`` counted by ptflops, per item of the batch (the first axis).

    A submodule with a ``count_macs(input, output)`` method counts its own (work ptflops
    does not see, such as GTCRN's fixed band maps, products with buffers).
    """
    own = {type(m): _count_own_macs for m in module.modules() if hasattr(m, "count_macs")}
    with _eval_mode(module), torch.no_grad():
        macs, _ = get_model_complexity_info(module, tuple(inputs.shape[1:]), input_constructor=lambda _: inputs,
                                            as_strings=False, print_per_layer_stat=False, verbose=False,
                                            ost=sys.stderr, custom_modules_hooks=own)
    if macs is None:
        raise RuntimeError(f"ptflops could not count the MACs of {type(module).__name__} (see its message above)")
    return int(macs)


def macs_per_second(model: SpeechEnhancer) -> int:
    """MACs of the network for one second of audio at the model's STFT settings."""
    wave = torch.randn(1, model.in_channels, SAMPLE_RATE, generator=torch.Generator().manual_seed(0))
    wave = wave.to(model_device(model))
    feats = sig.features(sig.stft(wave, model.signal), model.signal)
    return count_macs(model.network, feats)


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def real_time_factor(model: SpeechEnhancer, seconds: float = 10.0, threads: int | None = None,
                     runs: int = 3) -> float:
    """Processing time / audio duration of the whole enhancer (STFT to waveform) on the model's device.

    One warm-up pass, then the median of ``runs`` timed passes on ``seconds`` of noise.
    """
    if seconds <= 0 or runs < 1:
        raise SekdError(f"the real-time factor needs seconds > 0 and runs >= 1, got {seconds} and {runs}")
    noisy = torch.randn(1, model.in_channels, int(seconds * SAMPLE_RATE), generator=torch.Generator().manual_seed(0))
    device = model_device(model)
    noisy = noisy.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)  # GPU work is asynchronous
    with _torch_threads(threads), _eval_mode(model), torch.inference_mode():
        model(noisy)
        times = []
        for _ in range(runs):
            sync()
            start = time.perf_counter()
            model(noisy)
            sync()
            times.append(time.perf_counter() - start)
    return statistics.median(times) / seconds


def profile_model(model: SpeechEnhancer, seconds: float = 10.0, rtf_threads: int | None = None,
                  runs: int = 3) -> dict:
    """Cost of a SpeechEnhancer, as ``sekd profile`` prints it.

    Keys: ``params`` (all parameters), ``macs_per_second`` (see the module docstring),
    ``rtf`` (:func:`real_time_factor` with ``seconds`` of audio and ``rtf_threads`` torch
    threads, default: torch's current setting), and the description ``architecture`` (class
    name), ``description`` (one line), ``width``, ``layers``, ``heads`` (None where the
    network has no such argument), ``in_channels``, ``causal``, ``lookback``, ``n_fft``,
    ``hop``, ``frames_per_second``, ``threads``, ``seconds``, ``runs``.
    """
    net = model.network
    args = net.get_model_args()
    threads = rtf_threads or torch.get_num_threads()
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "macs_per_second": macs_per_second(model),
        "rtf": real_time_factor(model, seconds, threads, runs),
        "architecture": type(net).__name__,
        "description": net.describe(),
        "width": args.get("channels"),
        "layers": args.get("layers"),
        "heads": args.get("heads"),
        "in_channels": net.in_channels,
        "causal": net.causal,
        "lookback": args.get("lookback"),
        "n_fft": model.signal.n_fft,
        "hop": model.signal.hop,
        "frames_per_second": SAMPLE_RATE / model.signal.hop,
        "threads": threads,
        "seconds": seconds,
        "runs": runs,
    }


def format_profile(d: dict) -> str:
    """Human-readable lines for a :func:`profile_model` result."""
    return "\n".join([
        f"model             {d['description']}",
        f"signal            n_fft {d['n_fft']}, hop {d['hop']} ({d['frames_per_second']:g} frames/s)",
        f"parameters        {d['params']:,}",
        f"MACs per second   {d['macs_per_second'] / 1e9:.3f} G (ptflops, network only, 1 s of audio)",
        f"real-time factor  {d['rtf']:.4f} ({d['seconds']:g} s of audio, {d['threads']} torch thread(s), "
        f"median of {d['runs']} runs)",
    ])
