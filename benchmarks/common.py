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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from atriumseg.pipeline.analysis.metrics import mask_dice as dice  # noqa: F401 - the benchmarks' Dice

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "Task02_Heart_cropped"
TRUE_ORIENTATION = "ASL"  # MSD Task02 headers claim RAS; the data is truly ('A', 'S', 'L')
RESULT_MARK = "BENCHMARK-RESULT "
# The real datasets by name: their folder and the true axis codes of their voxels (None: the header is right).
DATASETS = {
    "LeftAtrium": (DEFAULT_DATA, TRUE_ORIENTATION),
    "LA2018_LGE": (ROOT.parent / "shared" / "data" / "LA2018_LGE", None),
}

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
    """Where the figures were taken: CPU, usable cores, torch threads, versions, the device, and the load
    average when the run ended (well above the torch thread count means other work shared the cores)."""
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
        "load_average_1_5_15min": list(os.getloadavg()),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(dtype: torch.dtype, device: torch.device, size: int, seconds: float = 1.0) -> float:
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


def peak_rates(device: torch.device, quick: bool) -> dict[str, float]:
    """The best matmul FLOP rate over a few large sizes, in bfloat16 and float32 (small sizes when ``quick``)."""
    sizes = (256, 512) if quick else (1024, 2048, 4096)
    return {name: max(matmul_rate(dtype, device, n) for n in sizes)
            for name, dtype in (("bfloat16", torch.bfloat16), ("float32", torch.float32))}


def describe_rates(rates: dict[str, float]) -> str:
    """One line for the table headers."""
    return f"matmul peak: bfloat16 {rates['bfloat16'] / 1e9:.0f} GFLOP/s, float32 {rates['float32'] / 1e9:.0f} GFLOP/s"


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


def serve_as_worker(spec: str | None, worker: Callable[[dict[str, Any]], dict[str, Any]]) -> bool:
    """A benchmark main's first step: in a :func:`run_worker` child (``spec`` given) run ``worker`` on the spec and
    hand its result to the parent on stdout; in the parent, set up logging. True in a child, whose work is done."""
    if spec is None:
        setup_logging()
        return False
    print(RESULT_MARK + json.dumps(worker(json.loads(spec))), flush=True)
    return True


def resolve_model(path: str | None, scratch: Path) -> tuple[Path, str]:
    """The one network to time and where it came from: ``path``, the built-in default, or an untrained
    width-32, depth-4, context-1 network (speed does not depend on the weights; agreement with float32 does).
    An ensemble gives its first member: the benchmarks that call this time one network against its float32
    loop (``benchmarks.models`` times whole ensembles)."""
    from atriumseg.models.card import Architecture, ModelCard, Preprocessing
    from atriumseg.models.checkpoint import CARD_NAME, build_network, default_model_path, save_model
    from atriumseg.models.ensemble import first_member

    if path:
        model, origin = Path(path), str(path)
    elif (default_model_path() / CARD_NAME).is_file():
        model, origin = default_model_path(), "built-in default"
    else:
        log.warning("no default model installed: timing an untrained network; pass --model PATH for a meaningful Dice")
        card = ModelCard(architecture=Architecture(in_channels=3, width=32, depth=4),
                         preprocessing=Preprocessing(context=1))
        torch.manual_seed(0)
        return save_model(build_network(card), card, scratch / "untrained"), "untrained (width 32, depth 4, context 1)"
    first = first_member(model)
    if first == model:
        return model, origin
    log.info("%s is an ensemble: timing its first member, %r", origin, first.name)
    return first, f"{origin}, its member {first.name!r}"


def source_images(data: Path, scratch: Path) -> list[Path]:
    """The real volumes in ``data/imagesTr``, or one synthetic 256x256x130 volume (ASL, 1.25 mm) when absent."""
    images = sorted((Path(data) / "imagesTr").glob("*.nii.gz"))
    if images:
        return images
    from atriumseg.synthetic import make_affine, synthetic_case

    log.warning("%s has no images: using a synthetic volume", data)
    shape = (256, 256, 130)
    case = synthetic_case(shape, make_affine(shape, (1.25, 1.25, 1.37), TRUE_ORIENTATION), seed=0)
    path = scratch / "synthetic_000.nii.gz"
    save_nifti(case.image, case.affine, path)
    return [path]


def save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    """Save ``array`` as NIfTI with qform and sform both set to ``affine``."""
    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, 1)
    image.set_sform(affine, 1)
    nib.save(image, path)
    return path


def make_volume(sources: list[Path], shape: tuple[int, int, int], spacing: float, path: Path) -> Path:
    """A volume of ``shape`` with in-plane (first two axes) voxels of ``spacing`` mm, cut from a real one.

    The source whose depth fits best is resampled trilinearly to the spacing (and, if deeper than
    any source, stretched along the third axis), then centre-cropped; its header keeps the source's
    axis directions. A source already of that shape and spacing is returned as it is.
    """
    headers = [nib.load(s) for s in sources]
    depths = [h.shape[2] for h in headers]
    fits = [i for i, d in enumerate(depths) if d == shape[2]]
    pick = fits[0] if fits else int(np.argmax(depths))
    image, source = headers[pick], sources[pick]
    zooms = np.asarray(image.header.get_zooms()[:3], float)
    old = np.asarray(image.shape[:3])
    size = np.array([round(old[0] * zooms[0] / spacing), round(old[1] * zooms[1] / spacing), max(shape[2], old[2])])
    if tuple(size) == tuple(shape) and tuple(old) == tuple(shape):
        return source
    data = torch.from_numpy(np.asarray(image.dataobj, dtype=np.float32))
    if tuple(size) != tuple(old):
        resized = torch.nn.functional.interpolate(data[None, None], size=tuple(int(n) for n in size), mode="trilinear")
        data = resized[0, 0]
    if np.any(size < np.asarray(shape)):
        raise ValueError(f"cannot cut {shape} at {spacing} mm from {source} (resampled size {tuple(size)})")
    start = (size - np.asarray(shape)) // 2
    crop = data[tuple(slice(int(s), int(s) + n) for s, n in zip(start, shape, strict=True))]
    ratio = old / size
    affine = image.affine.copy()
    affine[:3, 3] = image.affine[:3, :3] @ ((start + 0.5) * ratio - 0.5) + image.affine[:3, 3]
    affine[:3, :3] = image.affine[:3, :3] * ratio
    return save_nifti(np.ascontiguousarray(crop.numpy()), affine, path)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print a fixed-width table with a title line."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/NAME.json`` (git-ignored; ``NAME-quick.json`` for a smoke run, so it never
    replaces real figures) with the command that produced it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}{'-quick' if payload.get('quick') else ''}.json"
    record = {"benchmark": name, "command": " ".join(["python -m", f"benchmarks.{name}", *sys.argv[1:]]),
              "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **payload}
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
