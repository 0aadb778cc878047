"""Operator table of an exported per-hop step: what onnxruntime runs per hop, and where the time goes.

    python benchmarks/onnx_ops.py --preset gtcrn             # export a preset in memory (random weights)
    python benchmarks/onnx_ops.py model.onnx --hops 2000     # a file written by sekd export
    python benchmarks/onnx_ops.py --preset student-m --causal
    python benchmarks/onnx_ops.py --preset gtcrn --level extended   # another optimisation level

Prints three tables, by operator type: the nodes of the exported graph, the nodes left after
onnxruntime's graph optimisations (the session sekd streams with, ``sekd.runtime.onnx_session``:
one thread, all optimisations), and onnxruntime's profiler over ``--hops`` calls of the
step on one thread (calls, total kernel time, microseconds per hop, share of the kernels'
time), then the mean wall-clock time of one ``session.run`` with and without the profiler's
kernel total, which shows the per-call overhead outside the kernels. Node counts do not
depend on the machine's load; times do (the load average is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sekd.runtime import OPTIMISATION_LEVELS, OnnxStep, StreamFormat, onnx_session, session_options  # noqa: E402


def node_counts(model: onnx.ModelProto) -> Counter:
    """Operator types of the graph's nodes (subgraphs of If/Loop included)."""
    counts = Counter()

    def walk(graph):
        for node in graph.node:
            counts[node.op_type] += 1
            for attr in node.attribute:
                if attr.g.node:
                    walk(attr.g)

    walk(model.graph)
    return counts


def optimised_counts(data: bytes, level: str) -> Counter:
    """Operator types after onnxruntime's optimisations, as the streaming session applies them."""
    with tempfile.TemporaryDirectory() as tmp:
        opts = session_options(1, level)
        opts.optimized_model_filepath = str(Path(tmp) / "optimised.onnx")
        opts.log_severity_level = 3  # not the warning that a saved optimised model is hardware-specific
        onnx_session(data, options=opts)
        return node_counts(onnx.load(opts.optimized_model_filepath))


def profile(data: bytes, hops: int, level: str) -> tuple[dict, float, float]:
    """Per op type (calls, kernel µs) over ``hops`` calls; mean wall µs of a call without and with profiling."""
    fmt = StreamFormat.from_metadata({p.key: p.value for p in onnx.load_from_string(data).metadata_props},
                                     "the model")
    feats = np.random.default_rng(0).standard_normal((1, 2 * fmt.channels, 1, fmt.bins)).astype(np.float32)
    states = [(s.input, s.output, s.initial()) for s in fmt.states]

    def mean_call_us(step) -> float:  # 50 warm-up calls, then the mean of `hops` timed ones
        for _ in range(50):
            step(feats)
        start = time.perf_counter()
        for _ in range(hops):
            step(feats)
        return 1e6 * (time.perf_counter() - start) / hops

    plain_us = mean_call_us(OnnxStep(onnx_session(data, options=session_options(1, level)), fmt.feats, fmt.mask,
                                     states, "the model"))

    with tempfile.TemporaryDirectory() as tmp:
        opts = session_options(1, level)
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "trace")
        session = onnx_session(data, options=opts)
        profiled_us = mean_call_us(OnnxStep(session, fmt.feats, fmt.mask, states, "the model"))
        events = json.loads(Path(session.end_profiling()).read_text())
    table = defaultdict(lambda: [0, 0.0])
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    first_timed = sorted(e["ts"] for e in runs)[50] if len(runs) > 50 else 0  # leave out the warm-up calls
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= first_timed:
            entry = table[e["args"]["op_name"]]
            entry[0] += 1
            entry[1] += e["dur"]
    return dict(table), plain_us, profiled_us


def format_counts(title: str, counts: Counter) -> str:
    lines = [f"{title}: {sum(counts.values())} nodes", "", "| op | nodes |", "|---|---:|"]
    lines += [f"| {op} | {n} |" for op, n in counts.most_common()]
    return "\n".join(lines)


def format_profile(table: dict, hops: int, nodes: Counter) -> str:
    total = sum(us for _, us in table.values())
    lines = ["| op | nodes | calls per hop | µs per hop | share |", "|---|---:|---:|---:|---:|"]
    for op, (calls, us) in sorted(table.items(), key=lambda kv: -kv[1][1]):
        lines.append(f"| {op} | {nodes.get(op, 0)} | {calls / hops:.0f} | {us / hops:.1f} | {us / total:.1%} |")
    lines.append(f"| all kernels | {sum(nodes.values())} | {sum(c for c, _ in table.values()) / hops:.0f} | "
                 f"{total / hops:.1f} | 100% |")
    return "\n".join(lines)


def export_preset(preset: str, causal: bool) -> bytes:
    import torch
    from sekd.export import export_step
    from sekd.models import build_enhancer
    torch.manual_seed(0)
    kwargs = {"causal": True} if causal else {}
    return export_step(build_enhancer(preset, **kwargs).eval())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", help="ONNX file written by sekd export")
    parser.add_argument("--preset", help="export this preset in memory instead (random weights)")
    parser.add_argument("--causal", action="store_true", help="with --preset: the causal DPDCRN variant")
    parser.add_argument("--hops", type=int, default=1000, help="profiled calls (default 1000)")
    parser.add_argument("--level", choices=OPTIMISATION_LEVELS, default="all",
                        help="onnxruntime graph optimisation level (default all, what sekd streams with)")
    args = parser.parse_args()
    if (args.model is None) == (args.preset is None):
        parser.error("give an ONNX file or --preset, not both")
    data = Path(args.model).read_bytes() if args.model else export_preset(args.preset, args.causal)
    exported = node_counts(onnx.load_from_string(data))
    optimised = optimised_counts(data, args.level)
    load = os.getloadavg()[0]
    table, plain_us, profiled_us = profile(data, args.hops, args.level)
    name = args.model or f"preset {args.preset}" + (" (causal)" if args.causal else "")
    print(f"# {name}\n")
    print(format_counts("Exported graph", exported) + "\n")
    print(format_counts(f"After onnxruntime's optimisations (level {args.level})", optimised) + "\n")
    print(f"onnxruntime profiler, {args.hops} hops, one thread:\n")
    print(format_profile(table, args.hops, optimised) + "\n")
    kernels = sum(us for _, us in table.values()) / args.hops
    print(f"Mean session.run: {plain_us:.1f} µs ({profiled_us:.1f} µs while profiling, of which kernels "
          f"{kernels:.1f} µs); load average {load:.1f} on {os.cpu_count()} cores.")


if __name__ == "__main__":
    main()
