"""Cost of one distillation training step per method (CPU), as a ratio to the no-KD step.

    python benchmarks/kd_step.py            # teacher -> student-m, batch 8, 4 s crops
    python benchmarks/kd_step.py --quick    # cpu-teacher -> cpu-student, batch 4, 1 s crops

A step is: teacher forward with taps under no_grad, student forward with taps, SE loss
(MSE on the waveform) + KD loss, backward, Adam step on student and method parameters.
Weights are random (cost does not depend on them). Each configuration runs in two
subprocesses. Timing: 1 warm-up step, then the mean over the timed steps, with the
allocator as training has it. Memory is the resident-set high-water mark
(``resource.getrusage`` ru_maxrss) of a second process (1 warm-up + 1 step): what the machine
actually has to provide, allocator caching and autograd buffers included. tracemalloc does not see torch's allocations, and
torch.profiler's memory records slow the step it measures; the high-water mark cannot be
reset within a process, hence one process per configuration. "step MB" is the peak minus
the mark reached after building the models, the method, the optimiser and the batch, i.e.
what the training step itself adds. The memory process runs with glibc's mmap threshold
fixed at 1 MiB (``MALLOC_MMAP_THRESHOLD_``): by default it grows to 32 MiB after the first
large free, freed tensors below that then stay in the heap, and the high-water mark follows
the allocator's history more than the method. That setting makes every large tensor a
fresh mmap and slows the step (up to 2× here), which is why timing has a process of its own.

FLOPs: one more, untimed step in the timing process under ``torch.utils.flop_counter``, which
counts every matmul and convolution (the GRUs' too, checkpoint recomputation included) but no
elementwise work: a hardware-neutral view of what distillation adds.

Printed: a markdown table per method (step time, FLOPs and step memory, with ratios to ``none``,
the no-KD step through the same path, teacher forward included; ``(SE only)`` skips the
teacher), the share of the I²S-TFCKD step spent on distillation, I²S-TFCKD memory at
several crop lengths, and I²S-TFCKD cost without recomputation, with narrower or no fusion chains.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

SE_ONLY = "(SE only)"


def worker(args: argparse.Namespace) -> dict:
    import torch
    from torch.nn import functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from sekd.distill import TapInfo, build_method
    from sekd.models import build_enhancer

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    teacher = build_enhancer(args.teacher).eval().requires_grad_(False)
    student = build_enhancer(args.student)
    samples = int(args.seconds * 16000)
    method = None
    if args.method != SE_ONLY:
        method = build_method(args.method, TapInfo.from_enhancer(student, samples, args.batch),
                              TapInfo.from_enhancer(teacher, samples, args.batch), json.loads(args.options))
    params = [*student.parameters(), *(method.parameters() if method else [])]
    optimiser = torch.optim.Adam(params, lr=1e-4)
    noisy, clean = torch.randn(args.batch, samples), torch.randn(args.batch, samples)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def train_step() -> tuple[float, float]:
        """One optimiser step; returns when the KD forward started and ended."""
        if method is None:
            loss = F.mse_loss(student(noisy), clean)
            kd_start = kd_end = time.perf_counter()
        else:
            with torch.no_grad():
                _, teacher_taps = teacher(noisy, return_taps=True)
            enhanced, student_taps = student(noisy, return_taps=True)
            kd_start = time.perf_counter()
            kd, _ = method(student_taps, teacher_taps)
            kd_end = time.perf_counter()
            loss = F.mse_loss(enhanced, clean) + kd
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        return kd_start, kd_end

    steps, kd_forward = [], []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        kd_start, kd_end = train_step()
        if step >= args.warmup:
            steps.append(time.perf_counter() - start)
            kd_forward.append(kd_end - kd_start)
    flops = 0
    if args.flops:  # one more step, untimed: the counter sees every matmul and convolution, GRUs included
        with FlopCounterMode(display=False) as counter:
            train_step()
        flops = counter.get_total_flops()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return dict(step_s=sum(steps) / len(steps), kd_forward_s=sum(kd_forward) / len(kd_forward),
                peak_mb=peak / 1024, step_mb=(peak - base) / 1024,
                extra_params=method.extra_parameters() if method else 0, gflop=flops / 1e9)


def _worker_run(args: argparse.Namespace, method: str, seconds: float, options: dict, steps: int, warmup: int,
                env: dict, flops: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--method", method, "--seconds", str(seconds),
           "--teacher", args.teacher, "--student", args.student, "--batch", str(args.batch),
           "--steps", str(steps), "--warmup", str(warmup), "--threads", str(args.threads),
           "--options", json.dumps(options), *(["--flops"] if flops else [])]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        why = "killed, most likely out of memory" if done.returncode == -9 else done.stderr.strip()[-2000:]
        raise WorkerFailed(f"{method} {options or ''} at {seconds:g} s failed (exit {done.returncode}): {why}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class WorkerFailed(RuntimeError):
    """One configuration could not be measured; the others still are."""


def measure(args: argparse.Namespace, method: str, seconds: float, options: dict, flops: bool = True) -> dict:
    """Step time (and FLOPs) from a process with the default allocator, memory from one with a fixed mmap threshold."""
    timing = _worker_run(args, method, seconds, options, args.steps, args.warmup, dict(os.environ), flops=flops)
    memory = _worker_run(args, method, seconds, options, 1, 1,
                         {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)})
    result = {**timing, "peak_mb": memory["peak_mb"], "step_mb": memory["step_mb"]}
    print(f"  {method} {seconds:g} s: {result}", file=sys.stderr, flush=True)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small presets, short crops: a smoke run")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--methods", nargs="*", help="only these methods (default: all)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads per worker (default: torch's choice); 1 is steadier on a busy machine")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--teacher", help=argparse.SUPPRESS)
    parser.add_argument("--student", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--flops", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return

    from sekd.distill import list_methods

    if args.quick:
        args.teacher, args.student, args.batch, crop, crops = "cpu-teacher", "cpu-student", 4, 1.0, (0.5, 1.0, 2.0)
    else:
        args.teacher, args.student, args.batch, crop, crops = "teacher", "student-m", 8, 4.0, (2.0, 4.0, 8.0)
    names = args.methods or [name for name, _ in list_methods()]
    names = ["none", *[n for n in names if n != "none"]]
    print(f"# KD step cost: {args.teacher} -> {args.student}, batch {args.batch}, {crop:g} s crops, "
          f"{args.warmup} warm-up + {args.steps} timed steps, CPU, {args.threads or 'default'} thread(s)\n")

    results = {name: measure(args, name, crop, {}) for name in [SE_ONLY, *names]}
    # On a shared machine the load changes during the run: the no-KD step is timed again at
    # the end, and the less disturbed of the two timings is the reference for the ratios.
    again = measure(args, "none", crop, {}, flops=False)  # its FLOPs are those of the first run
    ref = dict(results["none"], step_s=min(results["none"]["step_s"], again["step_s"]))
    print(f"no-KD step timed first and last: {results['none']['step_s']:.2f} s and {again['step_s']:.2f} s; "
          f"ratios use {ref['step_s']:.2f} s\n")
    results["none"] = ref
    print("| method | step s | × none | KD forward s | step GFLOP | × none | step MB | × none | peak RSS MB "
          "| extra params |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['step_s']:.2f} | {r['step_s'] / ref['step_s']:.2f} | {r['kd_forward_s']:.3f} | "
              f"{r['gflop']:.0f} | {r['gflop'] / ref['gflop']:.2f} | "
              f"{r['step_mb']:.0f} | {r['step_mb'] / ref['step_mb']:.2f} | {r['peak_mb']:.0f} | "
              f"{r['extra_params']:,} |")

    if "i2s_tfckd" in results:
        i2s = results["i2s_tfckd"]
        print(f"\nI²S-TFCKD share of its step spent on distillation: "
              f"{1 - ref['step_s'] / i2s['step_s']:.0%} (1 − t_none / t_i2s: forward, backward and optimiser "
              f"of the KD part); KD forward alone {i2s['kd_forward_s'] / i2s['step_s']:.0%} of the step "
              f"(target ≤ 25 %). Share of the step's matmul and convolution FLOPs: "
              f"{1 - ref['gflop'] / i2s['gflop']:.0%} (the time share where those run equally fast everywhere "
              f"and elementwise work is free)\n")
        print("| crop s | frames | I²S step MB | none step MB | I²S peak RSS MB | I²S step s |")
        print("|---|---|---|---|---|---|")
        for seconds in crops:
            frames = 1 + int(seconds * 16000) // 256
            try:
                r = i2s if seconds == crop else measure(args, "i2s_tfckd", seconds, {}, flops=False)
                n = ref if seconds == crop else measure(args, "none", seconds, {}, flops=False)
            except WorkerFailed as error:
                print(f"| {seconds:g} | {frames} | {error} | | | |")
                continue
            print(f"| {seconds:g} | {frames} | {r['step_mb']:.0f} | {n['step_mb']:.0f} | "
                  f"{r['peak_mb']:.0f} | {r['step_s']:.2f} |")

        # Where the I²S-TFCKD cost sits: recomputing the fusion chains in backward, their width m, no fusion.
        print("\n| I²S-TFCKD options | step s | KD share | KD FLOP share | step MB | extra params |")
        print("|---|---|---|---|---|---|")
        for options in ({}, {"checkpoint": False}, {"fusion_channels": 64}, {"fusion_channels": 32},
                        {"fusion": False}):
            try:
                r = i2s if not options else measure(args, "i2s_tfckd", crop, options)
            except WorkerFailed as error:
                print(f"| {json.dumps(options)} | {error} | | | | |")
                continue
            print(f"| {json.dumps(options)} | {r['step_s']:.2f} | {1 - ref['step_s'] / r['step_s']:.0%} | "
                  f"{1 - ref['gflop'] / r['gflop']:.0%} | {r['step_mb']:.0f} | {r['extra_params']:,} |")


if __name__ == "__main__":
    main()
