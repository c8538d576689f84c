"""Step time with the default diagnostics on against off, on the same run.

Two trainers with the same model, weights, data (synthetic tensors on the
device), optimizer and schedule; one has the default diagnostics (update
ratios every 20 steps, guards every step, activations every 100, TensorBoard
scalars every step and histograms every 500, the record stream), the other
none (both write metrics.jsonl). They alternate rounds (an epoch of in-memory
batches each, timed whole: every hook's per-step and end-of-epoch work is
inside; the once-a-run setup and teardown of hooks, which a real run pays once,
is measured and taken out). The ratio is total time on / total time off over a whole
number of the longest interval, so the periodic work counts exactly in
proportion. Goal: <= 1.02.

    python benchmarks/diagnostics_overhead.py                     # digits CNN and ResNet-18 on the CPU
    python benchmarks/diagnostics_overhead.py --model resnet18    # one model; on a GPU: 224px, bf16, channels-last
"""

from __future__ import annotations

import argparse
import copy
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write_section

from tunekit.config import DiagnosticsConfig, ModelConfig, ScheduleConfig
from tunekit.core import DistInfo
from tunekit.diagnostics import diagnostic_hooks
from tunekit.engine import HookBase, MetricsWriter, ProgressHook, Trainer, build_scheduler
from tunekit.models import build_model
from tunekit.tasks import ClassificationTask

PERIOD = 500  # the longest default interval (histograms): the timed steps cover whole periods


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


_RUN_EVENTS = ("before_train", "after_train")
_STEP_EVENTS = ("before_epoch", "before_step", "after_backward", "after_step", "after_epoch")


def _time_calls(hook: HookBase, setup: list[float], per_step: list[float] | None) -> None:
    """Times ``hook``'s lifecycle calls: once-a-run ones into ``setup`` ([wall, cpu]),
    the others into ``per_step[0]`` (wall; the hook's direct cost), when given."""
    for event in (*_RUN_EVENTS, *_STEP_EVENTS):
        method = getattr(hook, event)
        once = event in _RUN_EVENTS
        if not once and per_step is None:
            continue

        def timed(method: object = method, once: bool = once) -> None:
            t0, c0 = time.perf_counter(), time.process_time()
            method()  # type: ignore[operator]
            if once:
                setup[0] += time.perf_counter() - t0
                setup[1] += time.process_time() - c0
            elif per_step is not None:
                per_step[0] += time.perf_counter() - t0

        setattr(hook, event, timed)


def measure(model_name: str, args: argparse.Namespace) -> dict[str, float | str]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device.type == "cuda"
    in_ch = 1 if model_name == "small_cnn" else 3
    size = 16 if model_name == "small_cnn" else (224 if gpu else args.size)
    batch = 64 if model_name == "small_cnn" else (64 if gpu else args.batch)
    amp = torch.bfloat16 if gpu else None
    torch.manual_seed(0)
    base = build_model(
        ModelConfig(name=model_name, width=16), num_classes=10, in_channels=in_ch
    ).to(device)
    if gpu:
        base = base.to(memory_format=torch.channels_last)
    steps = args.steps
    batches = [
        (
            torch.randn(batch, in_ch, size, size, device=device),
            torch.randint(0, 10, (batch,), device=device),
        )
        for _ in range(steps)
    ]
    if gpu:
        batches = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in batches]
    rounds = args.rounds
    total_epochs = rounds + 1
    tmp = Path(tempfile.mkdtemp(prefix="tunekit-diag-overhead-"))

    def make(arm: str) -> tuple[Trainer, list[float]]:
        model = copy.deepcopy(base)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        sched = build_scheduler(
            opt, ScheduleConfig(name="cosine", warmup_epochs=1), steps, total_epochs
        )
        times: list[float] = []
        hooks: list[HookBase] = [MetricsWriter(tmp / arm / "metrics.jsonl")]
        console = None
        if args.progress:
            from rich.console import Console

            console = Console(file=io.StringIO(), force_terminal=True, width=120)
        if arm == "on":
            diag = diagnostic_hooks(DiagnosticsConfig(), tmp / arm)
            for hook in diag:
                _time_calls(hook, setup[arm], in_hooks)
            hooks += diag
            if args.progress:
                hooks.append(ProgressHook(console=console, live=True))
        elif args.progress:
            hooks.append(ProgressHook(console=console))
        # A real run sets up and tears down its hooks once (a TensorBoard writer
        # is opened, metrics.jsonl checked); here every round is a train() call,
        # so that once-a-run time is taken out of the step time of both arms.
        for hook in hooks:
            if "before_train" not in vars(hook):  # not wrapped above
                _time_calls(hook, setup[arm], None)
        trainer = Trainer(
            model,
            opt,
            batches,  # type: ignore[arg-type]
            ClassificationTask(10, channels_last=gpu),
            epochs=0,
            scheduler=sched,
            hooks=hooks,
            dist=DistInfo(device=device),
            amp_dtype=amp,
        )
        return trainer, times

    in_hooks = [0.0]
    setup = {"off": [0.0, 0.0], "on": [0.0, 0.0]}
    arms = {arm: make(arm) for arm in ("off", "on")}
    # CPU time of the whole process (the TensorBoard writer thread included): on a
    # shared machine it moves far less with other jobs than wall time does.
    cpu: dict[str, list[float]] = {"off": [], "on": []}

    def run_round(arm: str) -> None:
        trainer, times = arms[arm]
        trainer.epochs += 1
        wall0, cpu0 = setup[arm]
        sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.train()
        sync(device)
        times.append(time.perf_counter() - t0 - (setup[arm][0] - wall0))
        cpu[arm].append(time.process_time() - c0 - (setup[arm][1] - cpu0))

    for arm in ("off", "on"):  # warm-up round (allocator, kernels), not counted
        run_round(arm)
        arms[arm][1].clear()
        cpu[arm].clear()
    in_hooks[0] = 0.0
    per_round: list[float] = []
    for r in range(rounds):
        order = ("on", "off") if r % 2 else ("off", "on")  # drift in machine speed hits both alike
        for arm in order:
            run_round(arm)
        per_round.append(arms["on"][1][-1] / arms["off"][1][-1])
    t_on, t_off = sum(arms["on"][1]), sum(arms["off"][1])
    n = steps * rounds
    return {
        "model": model_name,
        "shape": f"batch {batch}, {in_ch}x{size}x{size}" + (", bf16, channels-last" if gpu else ""),
        "steps": n,
        "off_ms": 1e3 * t_off / n,
        "on_ms": 1e3 * t_on / n,
        "ratio": t_on / t_off,
        "cpu_ratio": sum(cpu["on"]) / sum(cpu["off"]),
        "hook_share": in_hooks[0] / t_off,
        "load": os.getloadavg()[0],
        "round_median": statistics.median(per_round),
        "round_min": min(per_round),
        "round_max": max(per_round),
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", action="append", help="small_cnn and/or resnet18 (default: both)")
    p.add_argument("--steps", type=int, default=50, help="steps per round")
    p.add_argument(
        "--rounds",
        type=int,
        default=10,
        help="timed rounds per arm (steps x rounds: a multiple of 500)",
    )
    p.add_argument("--batch", type=int, default=32, help="ResNet-18 batch on the CPU")
    p.add_argument("--size", type=int, default=64, help="ResNet-18 image size on the CPU")
    p.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    p.add_argument(
        "--progress", action="store_true", help="add the live view (on) and the progress bar (off)"
    )
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = p.parse_args()
    if (args.steps * args.rounds) % PERIOD:
        p.error(
            f"--steps x --rounds must be a multiple of {PERIOD}, so each periodic cost counts in proportion"
        )
    if args.threads:
        torch.set_num_threads(args.threads)
    results = [measure(m, args) for m in (args.model or ["small_cnn", "resnet18"])]
    where = machine()
    rows = []
    print(f"device: {where}")
    for r in results:
        line = (
            f"{r['model']} ({r['shape']}): off {r['off_ms']:.2f} ms/step, on {r['on_ms']:.2f} ms/step, "
            f"ratio {r['ratio']:.3f} (per round: median {r['round_median']:.3f}, "
            f"{r['round_min']:.3f}-{r['round_max']:.3f}), CPU-time ratio {r['cpu_ratio']:.3f}, "
            f"time inside the diagnostic hooks {100 * r['hook_share']:.2f}% of the off time, "
            f"{r['steps']} steps each, load average {r['load']:.1f}"
        )
        print(line)
        rows.append(
            f"| {where} | {r['model']} ({r['shape']}) | {r['off_ms']:.2f} | {r['on_ms']:.2f} | **{r['ratio']:.3f}** "
            f"| {r['round_median']:.3f} ({r['round_min']:.3f}-{r['round_max']:.3f}) | {r['cpu_ratio']:.3f} "
            f"| {100 * r['hook_share']:.2f}% | {r['load']:.1f} |"
        )
    if not args.no_write:
        kind = "GPU" if torch.cuda.is_available() else "CPU"
        live = " with the live view / progress bar" if args.progress else ""
        write_section(
            f"Diagnostics overhead: {', '.join(str(r['model']) for r in results)} ({kind}{live})",
            f"""
`python benchmarks/diagnostics_overhead.py{" --progress" if args.progress else ""}` — the same run with the default
diagnostics on against off{live}: two trainers with the same model, weights, synthetic data, SGD
and cosine schedule, alternating rounds of {args.steps} steps ({args.rounds} timed rounds each after a
warm-up round); each round (an epoch) timed whole, hooks' end-of-epoch work included, their once-a-run
setup/teardown taken out; ratio = total time on / total time off (whole 500-step periods, so periodic work counts in proportion). Goal <= 1.02.

| machine | model | off ms/step | on ms/step | ratio on/off (wall) | per-round median (range) | ratio (CPU time) | time in diagnostic hooks | load avg |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
""",
        )


if __name__ == "__main__":
    main()
