"""Side-by-side timing and peak-memory probes.

Variants are timed round-robin in one process, so that load from other
processes, clock changes and thermal drift hit all of them alike; every
figure is a median over the repeats after warm-up.
"""
import ctypes
import ctypes.util
import os
import statistics
import threading
import time
from typing import Callable, Dict, List, Tuple

import torch

from ..models.layers import linear


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_interleaved(steps: Dict[str, Callable[[], object]], device: torch.device, warmup: int = 1,
                     repeats: int = 3) -> Tuple[Dict[str, List[float]], Dict[str, List[float]]]:
    """Wall-clock and process CPU seconds per call of every step.

    Warm-up rounds, then ``repeats`` timed rounds over all steps, in reverse
    order every other round. On a shared CPU the CPU time is the steadier
    figure: it does not count the time other processes hold the cores.
    """
    for _ in range(warmup):
        for step in steps.values():
            step()
    synchronize(device)
    wall = {name: [] for name in steps}
    cpu = {name: [] for name in steps}
    names = list(steps)
    for round_index in range(repeats):
        for name in names if round_index % 2 == 0 else names[::-1]:
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            steps[name]()
            synchronize(device)
            wall[name].append(time.perf_counter() - start_wall)
            cpu[name].append(time.process_time() - start_cpu)
    return wall, cpu


def median(values: List[float]) -> float:
    return statistics.median(values)


_PAGE_SIZE = os.sysconf('SC_PAGE_SIZE') if hasattr(os, 'sysconf') else 4096


def current_rss() -> int:
    """Resident set size of this process, bytes (Linux)."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * _PAGE_SIZE


def release_free_heap() -> None:
    """Return glibc's free heap pages to the OS, so that RSS tracks live memory."""
    libc_name = ctypes.util.find_library('c')
    if libc_name:
        try:
            ctypes.CDLL(libc_name).malloc_trim(0)
        except (OSError, AttributeError):
            pass


class PeakRSS:
    """Samples RSS every ``interval`` seconds in a thread while the block runs."""

    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    def _poll(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, current_rss())
            self._stop.wait(self.interval)

    def __enter__(self):
        self.peak = current_rss()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss())


def peak_memory(step: Callable[[], object], device: torch.device) -> Dict[str, float]:
    """Peak memory of one call, GiB.

    CUDA: ``max_memory_allocated`` (``peak``) and its rise over the memory held
    before the call (``step``). CPU: the process's peak RSS while the call runs
    and its rise over the RSS before it (glibc's free heap is trimmed first).
    """
    gib = 2 ** 30
    if device.type == 'cuda':
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return dict(peak_gib=peak / gib, step_gib=(peak - before) / gib)
    release_free_heap()
    before = current_rss()
    with PeakRSS() as probe:
        step()
    return dict(peak_gib=probe.peak / gib, step_gib=(probe.peak - before) / gib)


def matmul_flops_per_s(rows: int, in_dim: int, out_dim: int, device: torch.device,
                       dtype: torch.dtype, warmup: int = 2, repeats: int = 5) -> Tuple[float, float]:
    """Achieved FLOP per wall second and per CPU second of (rows, in_dim) x
    (out_dim, in_dim)^T on random data, through the model's own ``linear``: the
    fastest library the model uses on the device (oneDNN on CPU, cuBLAS on CUDA).

    On CUDA each timed sample runs 20 products, so that launch and sync
    overheads stay out of the figure.
    """
    x = torch.randn(rows, in_dim, device=device, dtype=dtype)
    weight = torch.randn(out_dim, in_dim, device=device, dtype=dtype)
    inner = 20 if device.type == 'cuda' else 1

    def products():
        for _ in range(inner):
            linear(x, weight)

    wall, cpu = time_interleaved({'matmul': products}, device, warmup, repeats)
    flops = 2 * rows * in_dim * out_dim * inner
    return flops / median(wall['matmul']), flops / median(cpu['matmul'])


def cpu_bf16_speedup(repeats: int = 2) -> float:
    """fp32 time / bf16-autocast time of a small transformer block's forward and backward.

    ``--amp`` on a CPU asks this before it trains in bf16: a CPU that reports bf16
    instructions can still run bf16 GEMMs far slower than fp32 (docs/benchmark.md has
    the measurements), so only a measurement decides. It takes well under a second.
    """
    from ..models.vit import Block
    torch.manual_seed(0)
    block = Block(768, 12)  # ViT-B width: small widths hide the slow bf16 GEMM path
    x = torch.randn(1, 64, 768, requires_grad=True)

    def step():
        block(x).sum().backward()

    times = {torch.float32: [], torch.bfloat16: []}
    for _ in range(repeats + 1):
        for dtype in times:
            with torch.autocast('cpu', dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                start = time.perf_counter()
                step()
                times[dtype].append(time.perf_counter() - start)
    fp32, bf16 = (sorted(t[1:])[len(t[1:]) // 2] for t in times.values())
    return fp32 / bf16
