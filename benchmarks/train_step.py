"""Training step cost on this CPU: fp32 against bf16-mixed autocast, for the study's three kinds of step.

    python benchmarks/train_step.py                      # the CPU study's teacher and student configs
    python benchmarks/train_step.py --study configs/study/cpu.yaml --steps 5
    python benchmarks/train_step.py --compile           # also torch.compile's step (minutes to compile)

A step is what Lightning runs: the module's ``training_loss`` (teacher forward with taps
under no_grad for distillation, student forward, SE loss, KD loss), backward, AdamW step,
through the same ``EnhancementModule`` / ``DistillationModule`` that ``sekd train`` and
``sekd distill`` use, on batches read from the corpus (random crops; data loading is timed
apart). ``bf16-mixed`` is Lightning's CPU precision plugin: ``torch.autocast("cpu",
torch.bfloat16)`` around the forward. Weights are random (cost does not depend on them).

Printed: the CPU's relevant features, then per step kind and precision the mean step time
(after warm-up), audio seconds trained per second, and the ratio to the fp32 step of the same
kind; then the time to load one batch, and to mix one afresh (``data.mixing: online`` on the
corpus's pools, or ``--pools``) as a share of the fp32 step (the goal: under 5 %); then
(``--jobs 2``, the default) how the cores are best
shared: fp32 steps of one run on all threads against ``jobs`` runs at once (separate
processes, one thread each, the way ``sekd study`` runs with ``jobs``), as steps per second
of the whole machine. Run it on an idle machine (pause other jobs).
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch

PRECISIONS = ("32-true", "bf16-mixed")


def cpu_features() -> str:
    flags = set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    wanted = ["avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16"]
    return (f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}; "
            + ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in wanted))


def build_modules(study_path: str, data: str | None, teacher_ckpt: Path) -> dict:
    """``{kind: (module, config)}`` for the teacher step, the no-KD step and the I²S-TFCKD step."""
    from sekd.checkpoint import save_enhancer
    from sekd.engine.distill import DistillationModule
    from sekd.engine.module import EnhancementModule
    from sekd.study import Run, load_study, run_config

    study = load_study(study_path, [f"data={data}"] if data else [])
    teacher_cfg = run_config(study, Run("teacher", 0, Path(tempfile.mkdtemp()), None))
    student_cfg = run_config(study, Run("none", 0, Path(tempfile.mkdtemp()), None))
    torch.manual_seed(0)
    teacher = EnhancementModule(teacher_cfg.to_dict())
    save_enhancer(teacher.model, teacher_ckpt)
    i2s_cfg = run_config(study, Run("i2s_tfckd", 0, Path(tempfile.mkdtemp()), "i2s_tfckd", 1.0,
                                    dict(study.options.get("i2s_tfckd") or {})))
    i2s_cfg.extra["distill"]["teacher"] = str(teacher_ckpt)
    return {"teacher": (teacher, teacher_cfg), "no-KD student": (EnhancementModule(student_cfg.to_dict()), student_cfg),
            "I²S-TFCKD student": (DistillationModule(i2s_cfg.to_dict()), i2s_cfg)}


def batches(cfg, count: int) -> tuple[list, float]:
    """``count`` training batches from the corpus and the mean seconds to load one."""
    from sekd.engine.train import make_loaders
    loader, _ = make_loaders(cfg)
    out, start = [], time.perf_counter()
    for batch in loader:
        out.append(batch)
        if len(out) == count:
            break
    return out, (time.perf_counter() - start) / len(out)


def online_batch_seconds(cfg, pools: str | None, count: int) -> float | None:
    """Mean seconds to mix one batch afresh (``data.mixing: online``, main process), after ``count`` batches of
    warm-up (a run keeps the recent rooms' spectra: their first use is not the steady cost); None without pools."""
    from sekd.engine.train import make_loaders
    from sekd.errors import SekdError
    online = copy.deepcopy(cfg)
    online.data.mixing, online.data.pools = "online", pools
    try:
        loader = iter(make_loaders(online)[0])
    except SekdError as exc:
        print(f"\nOnline mixing not timed: {exc}")
        return None
    for _ in range(count):
        next(loader)
    start = time.perf_counter()
    for _ in range(count):
        next(loader)
    return (time.perf_counter() - start) / count


def time_steps(module, data: list, precision: str, warmup: int, loss_fn=None) -> float:
    """Mean seconds of the steps after ``warmup``; ``loss_fn`` replaces ``module.training_loss`` (compiled)."""
    optimiser = module.configure_optimizers()["optimizer"]
    module.train()
    loss_fn = loss_fn or module.training_loss
    times = []
    for i, (noisy, clean) in enumerate(data):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
            loss, _ = loss_fn(noisy, clean)
        if not torch.isfinite(loss):
            raise RuntimeError(f"non-finite loss at {precision}")
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return sum(times) / len(times)


def compiled_step(module, data: list, warmup: int) -> tuple[float, float]:
    """(seconds to compile and run the first step, mean fp32 step after ``warmup``) with the whole loss
    (forward, taps, SE and KD losses; backward through AOTAutograd) under ``torch.compile`` (CPU inductor)."""
    import torch._dynamo
    torch._dynamo.reset()
    loss_fn = torch.compile(module.training_loss)
    start = time.perf_counter()
    time_steps(module, data[:1], "32-true", 0, loss_fn)
    return time.perf_counter() - start, time_steps(module, data, "32-true", warmup, loss_fn)


def one_kind(study: str, data: str | None, kind: str, steps: int, warmup: int) -> float:
    """Mean fp32 step time of one step kind, in this process (a ``--job`` worker)."""
    with tempfile.TemporaryDirectory() as tmp:
        module, cfg = build_modules(study, data, Path(tmp) / "teacher.ckpt")[kind]
        batch_list, _ = batches(cfg, warmup + steps)
        return time_steps(module, batch_list, "32-true", warmup)


def concurrent_steps(args, kind: str, jobs: int) -> float:
    """Steps per second of ``jobs`` processes stepping ``kind`` at once, one thread each."""
    import json
    import subprocess
    import sys
    cmd = [sys.executable, __file__, "--study", args.study, "--steps", str(args.steps), "--warmup",
           str(args.warmup), "--threads", "1", "--job", kind, *(["--data", args.data] if args.data else [])]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(jobs)]
    times = [json.loads(p.communicate()[0].strip().splitlines()[-1])["step"] for p in procs]
    return sum(1 / t for t in times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", default="configs/study/cpu.yaml", help="study config naming the teacher and "
                                                                          "student run configs")
    parser.add_argument("--data", help="corpus (default: the study's)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per kind and precision")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once in the sharing comparison (1: skip it)")
    parser.add_argument("--pools", help="pools for the online-mixing cost (default: the corpus's, from sekd data build)")
    parser.add_argument("--mix-batches", type=int, default=30, help="batches mixed online to time (after as many "
                                                                     "of warm-up)")
    parser.add_argument("--compile", action="store_true", help="also time the fp32 step under torch.compile (CPU "
                                                                    "inductor; compiling takes minutes per kind)")
    parser.add_argument("--job", help=argparse.SUPPRESS)  # worker: time this step kind, print JSON
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.job:
        import json
        print(json.dumps({"step": one_kind(args.study, args.data, args.job, args.steps, args.warmup)}))
        return
    print(f"# Training step, fp32 against bf16-mixed ({args.study}; {args.warmup} warm-up + {args.steps} timed "
          f"steps; {torch.get_num_threads()} threads)\n\n{cpu_features()}\n")
    with tempfile.TemporaryDirectory() as tmp:
        modules = build_modules(args.study, args.data, Path(tmp) / "teacher.ckpt")
        print("| step | batch × crop | precision | step s | audio s per s | × fp32 step |")
        print("|---|---|---|---:|---:|---:|")
        load_times, fp32_steps = {}, {}
        for kind, (module, cfg) in modules.items():
            data, load_times[kind] = batches(cfg, args.warmup + args.steps)
            audio = cfg.data.batch_size * cfg.data.crop_seconds
            fp32 = None
            for precision in PRECISIONS:
                step = time_steps(module, data, precision, args.warmup)
                fp32 = fp32_steps[kind] = fp32 or step
                print(f"| {kind} | {cfg.data.batch_size} × {cfg.data.crop_seconds:g} s | {precision} | {step:.2f} | "
                      f"{audio / step:.1f} | {step / fp32:.2f} |", flush=True)
        if args.compile:
            print("\ntorch.compile (inductor, default mode) of the whole training loss, against the eager fp32 step\n")
            print("| step | compile + first step s | compiled step s | eager step s | × eager | kept |")
            print("|---|---:|---:|---:|---:|---|")
            for kind, (module, cfg) in modules.items():
                data, _ = batches(cfg, args.warmup + args.steps)
                compile_s, step = compiled_step(module, data, args.warmup)
                ratio = step / fp32_steps[kind]
                print(f"| {kind} | {compile_s:.0f} | {step:.2f} | {fp32_steps[kind]:.2f} | {ratio:.2f} | "
                      f"{'yes' if ratio < 0.95 else 'no: not faster'} |", flush=True)
        print("\nLoading one batch (random crops from the corpus, main process): "
              + ", ".join(f"{kind} {seconds * 1e3:.0f} ms" for kind, seconds in load_times.items()))
        mixing = {}
        for kind, (_, cfg) in modules.items():
            if (seconds := online_batch_seconds(cfg, args.pools, args.mix_batches)) is None:
                break
            mixing[kind] = seconds
        if len(mixing) == len(modules):
            cfg = next(iter(modules.values()))[1].data
            print(f"\nOnline mixing (data.mixing=online, main process, mean of {args.mix_batches} batches; rir_prob "
                  f"{cfg.rir_prob}, noises {cfg.noises_per_example}), against the fp32 step\n")
            print("| step | batch × crop | mix one batch ms | fp32 step s | mixing / step |")
            print("|---|---|---:|---:|---:|")
            for kind, (_, cfg) in modules.items():
                print(f"| {kind} | {cfg.data.batch_size} × {cfg.data.crop_seconds:g} s | {mixing[kind] * 1e3:.1f} | "
                      f"{fp32_steps[kind]:.2f} | {100 * mixing[kind] / fp32_steps[kind]:.1f} % |", flush=True)
    if args.jobs > 1:
        print(f"\nSharing the cores (fp32): one run on {torch.get_num_threads()} threads against {args.jobs} runs at "
              "once with one thread each\n")
        print(f"| step | one run: steps/s | {args.jobs} runs: steps/s in all | × one run |")
        print("|---|---:|---:|---:|")
        for kind, step in fp32_steps.items():
            together = concurrent_steps(args, kind, args.jobs)
            print(f"| {kind} | {1 / step:.3f} | {together:.3f} | {together * step:.2f} |", flush=True)


if __name__ == "__main__":
    main()
