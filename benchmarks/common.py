"""What every benchmark needs: the machine and its matmul FLOP rate, network FLOPs, fresh-process workers,
realistic test volumes, the model to time, and the printed table and JSON record of a run."""

from __future__ import annotations

import json
import logging
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "Task02_Heart_cropped"
TRUE_ORIENTATION = "ASL"  # MSD Task02 headers claim RAS; the data is truly ('A', 'S', 'L')
RESULT_MARK = "BENCHMARK-RESULT "

log = logging.getLogger("benchmarks")


def setup_logging() -> None:
    """Progress messages on stderr, so stdout holds only the tables."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device) -> dict[str, Any]:
    """Where the figures were taken: CPU, usable cores, torch threads, versions and the device."""
    import monai

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": cores,
        "torch_threads": torch.get_num_threads(),
        "avx512_bf16": bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "python": platform.python_version(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(dtype: torch.dtype, device: torch.device, size: int, seconds: float = 1.5) -> float:
    """FLOP/s of the fastest ``size`` x ``size`` matmul in ``dtype``: the machine's usable arithmetic peak."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    for _ in range(2):
        a @ b
    best, runs, start = float("inf"), 0, time.perf_counter()
    while runs < 3 or time.perf_counter() - start < seconds:
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        best, runs = min(best, time.perf_counter() - t), runs + 1
    return 2.0 * size**3 / best


def network_flops(network: torch.nn.Module, shape: Sequence[int], backward: bool = False) -> float:
    """FLOPs of one forward pass (plus backward when asked) of ``network`` on a float32 input of ``shape``."""
    x = torch.zeros(*shape, requires_grad=False)
    with FlopCounterMode(display=False) as counter:
        if backward:
            network(x).float().sum().backward()
        else:
            with torch.no_grad():
                network(x)
    network.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cuda_peak_mb(device: torch.device) -> float | None:
    """Peak CUDA memory allocated by torch on ``device`` in MiB, or None off GPU."""
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def run_worker(module: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``python -m MODULE --worker SPEC`` in a fresh process (so peak memory is its own) and return its result."""
    command = [sys.executable, "-m", module, "--worker", json.dumps(spec)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-25:])
        raise RuntimeError(f"benchmark worker {module} {spec} failed (exit {done.returncode}):\n{tail}")
    return json.loads(lines[-1][len(RESULT_MARK):])


def emit(result: dict[str, Any]) -> None:
    """Hand a worker's result to the parent on stdout."""
    print(RESULT_MARK + json.dumps(result), flush=True)


def resolve_model(path: str | None, scratch: Path) -> tuple[Path, str]:
    """The model folder to time and where it came from: ``path``, the built-in default, or an untrained
    width-32, depth-4, context-1 network (speed does not depend on the weights; agreement does)."""
    from atriumseg.models.card import CARD_NAME if False else None  # noqa: F401  (placeholder removed below)
