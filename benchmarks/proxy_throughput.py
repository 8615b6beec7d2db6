"""Training throughput (img/s) of the project's proxy training step against a plain PyTorch loop,
per CIFAR zoo model, in one interleaved run (docs/hardware.md#measured).

- `project`: what `workers.proxy` runs: the recipe's plan
  (`memory_format="auto"`, docs/hardware.md#memory-format; AMP by the recipe's default: off on
  CPU, bf16/fp16 on CUDA), `workers.device.train_step` with the proxy's SGD (Nesterov, weight
  decay) and loss.
- `plain`: the same model (same initial weights), NCHW, fp32, `torch.optim.SGD` with the same
  settings, the textbook `zero_grad / loss.backward / step`.
Each side runs in a fresh process of its own for each model, as a user's script and a trial
do: a process that trained other models first (or the other side's step) has a heap shaped by
them and faults in a different number of pages (docs/benchmarks.md#proxy-training-throughput).
On CUDA both turn on cuDNN autotuning.
Each trains on its own copy of the same resident batch (no data loading in either), `--batch`
images, with `--threads` intra-op threads. The two processes never run at once: every round
runs one step of each, alternating which goes first; img/s come from the median step. Each
row also prints the median minor page faults per step of each side: on CPU the kernel's work of
mapping fresh pages for buffers above glibc's mmap threshold can be most of a step.

    .venv/bin/python benchmarks/proxy_throughput.py [--threads 2] [--rounds 5] [--models ...]
    .venv/bin/python benchmarks/proxy_throughput.py --device cuda [--trials 1 2 4]

`--device cuda` also runs `--concurrency-model` as 1, 2 and 4 concurrent trials on one GPU
(one process each, each capped at its share of GPU memory as `search.gpus_per_trial` would
give it) and prints one trial's img/s and the aggregate.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import queue
import resource
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from search_space import build_model, load_arch, zoo_names
from workers.device import cap_memory, configure_cuda, train_step
from workers.proxy import ProxyRecipe, make_optimizer, plan_for

CLASSES = 100


def cifar_zoo() -> list[str]:
    return [n for n in zoo_names() if load_arch(n).resolution == 32]


def _batch(batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=g)
    return x.to(device), torch.randint(CLASSES, (batch,), generator=g).to(device)


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return build_model(load_arch(name).with_changes(num_classes=CLASSES)).train()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def project_step(
    name: str, recipe: ProxyRecipe, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device
) -> tuple[Callable[[], None], str]:
    """The proxy trainer's step for `name` and its plan's description."""
    model = _model(name)
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    plan = plan_for(model, recipe, device)
    model = plan.prepare(model)
    optimizer = make_optimizer(model, recipe)
    scaler = plan.grad_scaler()
    x, y = batch

    def step() -> None:
        train_step(model, x, y, criterion, optimizer, scaler, plan)

    return step, plan.describe()


def plain_step(
    name: str, recipe: ProxyRecipe, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device
) -> Callable[[], None]:
    model = _model(name).to(device)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=recipe.scaled_lr,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov,
        weight_decay=recipe.weight_decay,
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    x, y = batch

    def step() -> None:
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()

    return step


def _timed(step: Callable[[], None], device: torch.device) -> tuple[float, int]:
    """Seconds of one step and the page faults it took (the kernel's share of a CPU step:
    buffers above glibc's mmap threshold are mapped afresh and faulted in on every step)."""
    _sync(device)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    step()
    _sync(device)
    seconds = time.perf_counter() - t0
    return seconds, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults


def _runner(kind: str, device_type: str, batch_size: int, threads: int, conn: Any) -> None:
    """One side of the comparison in its own process: ("load", name) builds that model's step
    and answers its plan; ("step",) runs one step and answers its seconds and page faults;
    None ends."""
    torch.set_num_threads(threads)
    device = torch.device(device_type)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # both sides: what configure_cuda sets outside Ray
    recipe = ProxyRecipe(batch_size=batch_size, device=device.type)  # type: ignore[arg-type]
    batch = _batch(batch_size, device)
    step: Callable[[], None] = lambda: None  # noqa: E731
    while (msg := conn.recv()) is not None:
        if msg[0] == "load":
            if kind == "project":
                step, plan = project_step(msg[1], recipe, batch, device)
            else:
                step, plan = plain_step(msg[1], recipe, batch, device), "contiguous fp32"
            conn.send(plan)
        else:
            conn.send(_timed(step, device))


@contextlib.contextmanager
def _sides(args: argparse.Namespace, device: torch.device) -> Iterator[Callable[..., Any]]:
    """A fresh plain and project process (a trial starts in a fresh process too, and a heap
    shaped by earlier models would change the next model's page faults); yields `call(kind,
    *msg)`, which answers that side's reply."""
    ctx = mp.get_context("spawn")
    sides = {}
    for kind in ("plain", "project"):
        here, there = ctx.Pipe()
        proc = ctx.Process(target=_runner,
                           args=(kind, device.type, args.batch, args.threads, there))
        proc.start()
        there.close()  # a side that dies then reads as EOF here, not as silence
        sides[kind] = (here, proc)

    def call(kind: str, *msg: Any) -> Any:
        conn, proc = sides[kind]
        try:
            conn.send(msg)  # BrokenPipeError: the side died since its last answer
            if not conn.poll(900):
                raise RuntimeError(f"the {kind} process did not answer {msg[0]!r} in 900 s")
            return conn.recv()
        except (EOFError, BrokenPipeError):
            proc.join(timeout=5)
            raise RuntimeError(f"the {kind} process died (exit code {proc.exitcode}; "
                               "a negative code is the signal, -9: out of memory?)") from None

    try:
        yield call
    finally:
        for conn, proc in sides.values():
            with contextlib.suppress(OSError):
                conn.send(None)
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()


def compare(names: list[str], args: argparse.Namespace, device: torch.device) -> None:
    print(f"{'model':32s} {'plain img/s':>11s} {'project img/s':>13s} {'ratio':>6s}  "
          f"{'faults/step plain project':>25s}  {'project plan':28s}")
    ratios = []
    for name in names:
        with _sides(args, device) as call:
            call("plain", "load", name)
            plan = call("project", "load", name)
            for _ in range(args.warmup):
                call("project", "step")
                call("plain", "step")
            times: dict[str, list[float]] = {"plain": [], "project": []}
            faults: dict[str, list[int]] = {"plain": [], "project": []}
            for r in range(args.rounds):
                order = ["plain", "project"]
                for kind in order if r % 2 == 0 else order[::-1]:
                    seconds, step_faults = call(kind, "step")
                    times[kind].append(seconds)
                    faults[kind].append(step_faults)
        plain_ips = args.batch / statistics.median(times["plain"])
        project_ips = args.batch / statistics.median(times["project"])
        ratios.append(project_ips / plain_ips)
        fault_cols = " ".join(f"{statistics.median(faults[k]):>12,.0f}"
                              for k in ("plain", "project"))
        print(f"{name:32s} {plain_ips:11.1f} {project_ips:13.1f} {ratios[-1]:5.2f}x  "
              f"{fault_cols}  {plan:28s}", flush=True)
    print(f"min ratio {min(ratios):.2f}x, geometric mean "
          f"{statistics.geometric_mean(ratios):.2f}x over {len(ratios)} models")


def _trial(
    name: str, batch: int, share: float, threads: int, seconds: float,
    barrier: Any, out: Any,
) -> None:
    """One concurrent trial: its share of GPU memory, the project step, img/s over `seconds`.
    Puts its img/s on `out`, or the error that stopped it (the parent must not wait forever)."""
    try:
        torch.set_num_threads(threads)
        device = torch.device("cuda")
        configure_cuda(device)
        if share < 1:
            cap_memory(share, device)
        recipe = ProxyRecipe(batch_size=batch, device="cuda")
        step, _ = project_step(name, recipe, _batch(batch, device), device)
        for _ in range(5):
            step()
        _sync(device)
        barrier.wait(timeout=300)
        steps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            step()
            steps += 1
        _sync(device)
        out.put(steps * batch / (time.perf_counter() - t0))
    except BaseException as exc:
        if not isinstance(exc, threading.BrokenBarrierError):  # another trial's failure
            out.put(f"{type(exc).__name__}: {exc}")
        barrier.abort()  # the others stop waiting for this one
        raise


def _collect(procs: list[Any], out: Any, timeout: float) -> list[float]:
    """Each trial's img/s; raises with the first trial's error, or with the exit code of a
    trial that died without a word (a crash, the OOM killer), or after `timeout` seconds."""
    results: list[float] = []
    deadline = time.monotonic() + timeout
    try:
        while len(results) < len(procs):
            try:
                got = out.get(timeout=2)
            except queue.Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"a trial process died (exit code {dead[0]}; a negative "
                                       "code is the signal)") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the trials did not finish in {timeout:.0f} s") from None
                continue
            if isinstance(got, str):
                raise RuntimeError(got)
            results.append(got)
    finally:
        for p in procs:
            p.join(timeout=10 if len(results) == len(procs) else 0)
            if p.is_alive():
                p.kill()
    return results


def concurrent(name: str, args: argparse.Namespace) -> None:
    ctx = mp.get_context("spawn")
    cpus = len(os.sched_getaffinity(0))
    print(f"\n{name}: concurrent trials on one GPU, batch {args.batch}, {args.seconds:.0f} s each")
    print(f"{'trials':>6s} {'per trial img/s':>16s} {'aggregate img/s':>16s} {'vs 1 trial':>10s}")
    single = None
    for k in args.trials:
        barrier, out = ctx.Barrier(k), ctx.Queue()
        procs = [
            ctx.Process(target=_trial, args=(name, args.batch, 1 / k, max(1, cpus // k),
                                             args.seconds, barrier, out))
            for _ in range(k)
        ]
        for p in procs:
            p.start()
        try:
            rates = _collect(procs, out, args.seconds + 300)
        except RuntimeError as exc:
            print(f"{k:6d} FAILED: {exc}", flush=True)
            raise SystemExit(1) from None
        total = sum(rates)
        single = single or total
        print(f"{k:6d} {statistics.mean(rates):16.0f} {total:16.0f} {total / single:9.2f}x",
              flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (CPU)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--models", nargs="*", default=None, help="default: every CIFAR zoo model")
    p.add_argument("--trials", type=int, nargs="*", default=[1, 2, 4])
    p.add_argument("--concurrency-model", default="mobilenet_v2_cifar100")
    p.add_argument("--seconds", type=float, default=10.0, help="timed seconds per trial (cuda)")
    args = p.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    cifar = cifar_zoo()
    names = args.models or cifar
    if unknown := [n for n in names if n not in cifar]:
        p.error(f"--models: {', '.join(unknown)} is not a CIFAR zoo model "
                f"(32-px batches; choose from {', '.join(cifar)})")
    print(f"device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + f", torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"{args.rounds} rounds after {args.warmup} warm-up, load {os.getloadavg()[0]:.2f}")
    compare(names, args, device)
    if device.type == "cuda" and args.trials:
        concurrent(args.concurrency_model, args)


if __name__ == "__main__":
    main()
