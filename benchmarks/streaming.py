"""Per-hop cost of streaming enhancement on one thread, as a fraction of the hop's duration.

    python benchmarks/streaming.py              # 500 timed hops per row
    python benchmarks/streaming.py --hops 2000  # steadier percentiles
    python benchmarks/streaming.py --quick      # 100 hops, student-m, gtcrn and the peers only
    python benchmarks/streaming.py --systems gtcrn gtcrn-l nsnet2   # some rows only
    python benchmarks/streaming.py --systems gtcrn nsnet2 --signal 512/256 256/128   # both STFT settings

Rows: the causal ``student-m``, the causal ``student-l``, the teacher and the ultra-light
``gtcrn`` and ``gtcrn-l`` (causal by design), each through the streaming engine
(``sekd.streaming.StreamingEnhancer``) with PyTorch, with onnxruntime (fp32) and with
onnxruntime on the export with int8 weights (``onnx-int8``, ``sekd export --quantize int8``:
onnxruntime's dynamic quantisation of the MatMul weights; its quality against fp32:
``benchmarks/int8_quality.py``); then RNNoise and NSNet2 through
their adapters in ``sekd.peers``. The teacher runs as a
causal model too: an offline teacher attends over the whole file and cannot run per hop,
and the causal variant has the same convolutions, GRUs and projections per frame (its
attention reads a 4 s cache instead of the whole file). Weights are random: cost does not
depend on them. Models without a look-back keep ``sekd.streaming.CACHE_SECONDS`` of
attention memory.

One timed call is everything a real-time loop does per hop: for our models ``push`` of
one hop of new samples (256, 16 ms at 16 kHz; 128 with ``--signal 256/128``) = STFT of one frame, the network step, the polar mask,
inverse FFT and overlap-add; for RNNoise one 480-sample frame at 48 kHz (10 ms), for NSNet2
one 160-sample hop at 16 kHz (10 ms). Each is reported as a fraction of its own hop's
duration (1.0 = exactly real time on one core). One thread everywhere: ``torch.set_num_threads(1)``,
onnxruntime ``intra_op_num_threads=1``; RNNoise is single-threaded C. 20 warm-up hops are
not timed. The rows are timed in turns (``ROUNDS`` rounds of ``hops / ROUNDS`` calls each, in
a rotating order, each turn after ``TURN_WARMUP`` untimed calls), so a drift of the machine's speed during the run touches every row alike
and the ratios between rows hold. Wall-clock time is what a real-time loop must fit in the hop; CPU time (the
process's, ``time.process_time``, so work on helper threads counts too) leaves out the
time other processes hold the core, so it shows the cost of the code on a shared machine
(the load average is printed with the table; contention shows first in the wall-clock
99th percentile).

A second table divides every row by NSNet2 measured in the same run (NSNet2 is always
measured; the row is added when ``--systems`` leaves it out): per hop (time of one call,
mean) and per audio second (share of the row's own hop, mean and 99th percentile), wall
and CPU time. Below 1 is cheaper than NSNet2. Ratios from one run on one machine are
comparable even when the machine's absolute speed is not.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sekd.audio import SAMPLE_RATE  # noqa: E402
from sekd.export import export_step  # noqa: E402
from sekd.models import build_enhancer  # noqa: E402
from sekd.streaming import StreamingEnhancer  # noqa: E402

WARMUP = 20
ROUNDS = 10  # the rows take turns: each round times hops / ROUNDS calls of every row
TURN_WARMUP = 5  # untimed calls at the start of each turn: the first call after another row's finds cold caches
ENGINES = ("torch", "onnx", "onnx-int8")
OURS = ("student-m", "student-l", "teacher", "gtcrn", "gtcrn-l")
PEER_NAMES = ("rnnoise", "nsnet2")
TARGET = 0.25  # causal student-m under ONNX: p99 at most 25 % of the hop
GTCRN_ONNX_TARGET = 1 / 3    # gtcrn under onnxruntime: p99 share of its hop at most a third of NSNet2's (issue 27)
GTCRN_TORCH_TARGET = 1 / 3   # gtcrn in eager PyTorch: p99 under a third of its hop (issue 27)
DEFAULT_SIGNAL = (512, 256)  # (n_fft, hop) of every model unless --signal asks for others (256/128: low latency)


def stft_setting(text: str) -> tuple[int, int]:
    """``N_FFT/HOP``, e.g. ``256/128``."""
    try:
        n_fft, hop = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N_FFT/HOP such as 256/128, got {text!r}") from None
    return n_fft, hop


def time_calls(call, frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Wall-clock and process CPU seconds per call of ``call(frame)``."""
    wall, cpu = np.empty(len(frames)), np.empty(len(frames))
    for i, frame in enumerate(frames):
        start, start_cpu = time.perf_counter(), time.process_time()
        call(frame)
        wall[i], cpu[i] = time.perf_counter() - start, time.process_time() - start_cpu
    return wall, cpu


def time_in_turns(rows: list[dict], hops: int) -> None:
    """Fill each row's ``times`` and ``cpu``: ``WARMUP`` untimed calls each, then ``ROUNDS`` rounds in
    which every row, in an order rotated each round, makes ``TURN_WARMUP`` untimed calls and times
    its next ``hops / ROUNDS`` (the rows' streams go on from frame to frame throughout)."""
    for r in rows:
        time_calls(r["call"], r["frames"][:WARMUP])
    per_round = -(-hops // ROUNDS)
    parts = {id(r): ([], []) for r in rows}
    for k in range(ROUNDS):
        for r in rows[k % len(rows):] + rows[:k % len(rows)]:
            start = WARMUP + k * (per_round + TURN_WARMUP)
            time_calls(r["call"], r["frames"][start:start + TURN_WARMUP])
            frames = r["frames"][start + TURN_WARMUP:start + TURN_WARMUP + min(per_round, hops - k * per_round)]
            wall, cpu = time_calls(r["call"], frames)
            parts[id(r)][0].append(wall)
            parts[id(r)][1].append(cpu)
    for r in rows:
        r["times"], r["cpu"] = (np.concatenate(x) for x in parts[id(r)])


def noise_frames(size: int, count: int, seed: int = 0) -> list[np.ndarray]:
    audio = 0.1 * np.random.default_rng(seed).standard_normal(size * count).astype(np.float32)
    return [audio[i * size:(i + 1) * size] for i in range(count)]


def int8_export(model) -> bytes:
    """The exported step as ``sekd export --quantize int8`` writes it (:func:`sekd.export.quantize_int8`)."""
    return export_step(model, quantize="int8")


def ours(preset: str, engine: str, hops: int, signal: tuple[int, int] = DEFAULT_SIGNAL) -> dict:
    """``engine``: torch, onnx (fp32) or onnx-int8 (:func:`int8_export`), all in the streaming engine.

    ``signal``: the STFT's (n_fft, hop); rows of another than the default are named with it.
    """
    torch.manual_seed(0)
    model = build_enhancer(preset, causal=True, signal_args=dict(n_fft=signal[0], hop=signal[1])).eval()
    if engine == "onnx-int8":
        streamer = StreamingEnhancer(model, engine="onnx", onnx_model=int8_export(model), threads=1)
    else:
        streamer = StreamingEnhancer(model, engine=engine, threads=1)
    hop = model.signal.hop
    name = preset if signal == DEFAULT_SIGNAL else f"{preset} {signal[0]}/{signal[1]}"
    return dict(system=f"{name} (causal)", engine=engine, hop_ms=1000 * hop / SAMPLE_RATE, call=streamer.push,
                frames=noise_frames(hop, hops + WARMUP + ROUNDS * TURN_WARMUP))


def peer(name: str, hops: int) -> dict:
    from sekd.peers import build_peer
    p = build_peer(name)
    stream = p.stream()
    engine = {"rnnoise": "C (librnnoise)", "nsnet2": "onnxruntime"}[name]
    return dict(system=name, engine=engine, hop_ms=1000 * p.frame_size / p.native_rate, call=stream.process_frame,
                frames=noise_frames(p.frame_size, hops + WARMUP + ROUNDS * TURN_WARMUP))


def format_rows(rows: list[dict]) -> str:
    lines = ["| system | engine | hop (ms) | mean (ms) | p99 (ms) | mean / hop | p99 / hop | CPU p99 / hop |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        mean, p99 = 1000 * r["times"].mean(), 1000 * np.percentile(r["times"], 99)
        cpu99 = 1000 * np.percentile(r["cpu"], 99)
        lines.append(f"| {r['system']} | {r['engine']} | {r['hop_ms']:.0f} | {mean:.2f} | {p99:.2f} | "
                     f"{mean / r['hop_ms']:.1%} | {p99 / r['hop_ms']:.1%} | {cpu99 / r['hop_ms']:.1%} |")
    return "\n".join(lines)


def costs(row: dict) -> dict[str, float]:
    """A row's cost figures that the ratio table divides: per hop (ms per call) and per audio second (share)."""
    hop = row["hop_ms"] / 1000
    return {"hop_wall": row["times"].mean(), "hop_cpu": row["cpu"].mean(),
            "sec_wall": row["times"].mean() / hop, "sec_wall99": np.percentile(row["times"], 99) / hop,
            "sec_cpu": row["cpu"].mean() / hop, "sec_cpu99": np.percentile(row["cpu"], 99) / hop}


def format_ratios(rows: list[dict], reference: dict) -> str:
    """Every row's costs divided by ``reference``'s (NSNet2, same run)."""
    ref = costs(reference)
    lines = ["| system | engine | per hop: wall mean | CPU mean | per audio second: wall mean | wall p99 | "
             "CPU mean | CPU p99 |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        c = costs(r)
        cells = " | ".join(f"{c[k] / ref[k]:.2f}×" for k in ("hop_wall", "hop_cpu", "sec_wall", "sec_wall99",
                                                              "sec_cpu", "sec_cpu99"))
        lines.append(f"| {r['system']} | {r['engine']} | {cells} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hops", type=int, default=500, help="timed hops per row (default 500)")
    parser.add_argument("--quick", action="store_true", help="100 hops; student-m, gtcrn and the peers only")
    parser.add_argument("--systems", nargs="+", choices=(*OURS, *PEER_NAMES), default=None,
                        help="rows to measure (default: all, or the --quick ones)")
    parser.add_argument("--signal", nargs="+", type=stft_setting, default=[DEFAULT_SIGNAL], metavar="N_FFT/HOP",
                        help="STFT settings our rows are built with (default 512/256; 256/128: low latency)")
    args = parser.parse_args()
    hops = 100 if args.quick else args.hops
    torch.set_num_threads(1)
    systems = args.systems or (["student-m", "gtcrn", *PEER_NAMES] if args.quick else [*OURS, *PEER_NAMES])

    peers = [s for s in systems if s in PEER_NAMES]
    if "nsnet2" not in peers:
        peers.append("nsnet2")  # the reference of the ratio table
    load_before = os.getloadavg()[0]
    rows = []
    for preset in (s for s in systems if s in OURS):
        for signal in args.signal:
            for engine in ENGINES:
                try:
                    rows.append(ours(preset, engine, hops, signal))
                except Exception as exc:  # onnxruntime's quantiser may not take every graph; the other rows stand
                    print(f"{preset} {signal[0]}/{signal[1]} {engine}: skipped ({type(exc).__name__}: {exc})",
                          file=sys.stderr)
    for name in peers:
        try:
            rows.append(peer(name, hops))
        except Exception as exc:  # a missing peer package must not hide our own figures
            print(f"{name}: skipped ({exc})", file=sys.stderr)
    time_in_turns(rows, hops)
    load_after = os.getloadavg()[0]

    print(format_rows(rows))
    reference = next((r for r in rows if r["system"] == "nsnet2"), None)
    if reference is not None:
        print("\nRatio to NSNet2 in this run (below 1: cheaper than NSNet2):\n")
        print(format_ratios(rows, reference))
    latencies = [StreamingEnhancer(build_enhancer("tiny", causal=True, signal_args=dict(n_fft=n, hop=h)))
                 for n, h in args.signal]
    print(f"\n{hops} timed hops per row, one thread; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, load average {load_before:.1f} before / {load_after:.1f} after.")
    print("Algorithmic latency of our models: " + ", ".join(
        f"{s.latency} samples ({s.latency_ms:.2f} ms) at n_fft {s.n_fft}, hop {s.hop}" for s in latencies) + ".")
    student = next((r for r in rows if r["system"].startswith("student-m") and r["engine"] == "onnx"), None)
    if student is not None:
        p99 = np.percentile(student["times"], 99) * 1000 / student["hop_ms"]
        print(f"Target (causal student-m, ONNX, p99 <= {TARGET:.0%} of the hop): {p99:.1%} -> "
              f"{'met' if p99 <= TARGET else 'NOT met'}.")
    for r in (r for r in rows if r["system"].startswith("gtcrn (")):
        if r["engine"] == "torch":
            share = costs(r)["sec_wall99"]
            print(f"Target (gtcrn, PyTorch, p99 <= {GTCRN_TORCH_TARGET:.0%} of the hop): {share:.1%} -> "
                  f"{'met' if share <= GTCRN_TORCH_TARGET else 'NOT met'}.")
        elif reference is not None:  # fp32 and int8
            ratio = costs(r)["sec_wall99"] / costs(reference)["sec_wall99"]
            print(f"Target (gtcrn, {r['engine']}, p99 share of the hop <= {GTCRN_ONNX_TARGET:.2f}× NSNet2's): "
                  f"{ratio:.2f}× -> {'met' if ratio <= GTCRN_ONNX_TARGET else 'NOT met'}.")

if __name__ == "__main__":
    main()
