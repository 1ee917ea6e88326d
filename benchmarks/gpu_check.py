"""GPU check (issue 21): the device tests, inference and training throughput on one device, all in one JSON file.

``benchmarks/gpu_check.sh`` runs it with ``--device cuda`` on a lent GPU machine; ``--device cpu`` is a dry
run of the same steps on any machine. Three stages, each recorded even when another fails:

1. tests: ``tests/pipeline/inference/test_device.py`` on the device, counted from pytest's JUnit XML: the
   fast ones, then the slow ones (training, torchrun, the process group; left out with ``--quick``) in a
   second run, so that a hang there loses nothing else; logs in ``OUT/tests.log`` and ``OUT/slow_tests.log``.
2. inference: the built-in model through the public ``segment`` on the 256x256x130 case and on a
   512x512x300 volume resampled from it (0.625 mm in-plane, stretched along the slices), each read into
   memory first and nothing written: seconds per volume after one warm-up (synchronised), the network's
   share, peak GPU memory, and the Dice against the same segmentation on the CPU, which is the baseline
   measured in the same run (its seconds give the speed ratio).
3. training: ``python -m benchmarks.training`` on the device: slices per second of the training step
   (default precision against float32) and of ``train()`` on the case.

Targets: the 256x256x130 case in under 0.3 s on an H100/H200-class GPU, every mask within Dice 0.999
of the CPU's, every device test passing. Figures go to ``OUT/gpu_check.json``, rewritten after each stage.

    python -m benchmarks.gpu_check --device cuda --data .gpu/data --out "$OUT"
    python -m benchmarks.gpu_check --device cpu --quick                    # a dry run, small volumes
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

import nibabel as nib
import numpy as np
import torch

from benchmarks.common import (
    DEFAULT_DATA,
    RESULTS,
    ROOT,
    TRUE_ORIENTATION,
    dice,
    machine,
    make_volume,
    print_table,
    setup_logging,
)
from benchmarks.gpu_bundle import BUNDLE_DATA
from benchmarks.timing import NetworkClock

log = logging.getLogger("benchmarks.gpu_check")

TEST_FILE = "tests/pipeline/inference/test_device.py"
TARGET_SECONDS, TARGET_DICE = 0.3, 0.999  # the 256x256x130 case on an H100/H200-class GPU; masks vs the CPU's
# (name, shape, in-plane spacing in mm): the case itself, and a large volume cut from it; smaller with --quick.
VOLUMES = [("256x256x130", (256, 256, 130), 1.25), ("512x512x300", (512, 512, 300), 0.625)]
QUICK_VOLUMES = [("128x128x40", (128, 128, 40), 1.25), ("192x192x60", (192, 192, 60), 0.625)]
TIMEOUTS_S = {"tests": 120, "slow_tests": 180, "training": 150}  # on a GPU; a CPU dry run: CPU_SLOWER times
TEST_SELECTIONS = {"tests": "not slow", "slow_tests": "slow"}  # two runs: a hang in the slow ones keeps the rest
CPU_SLOWER = 4
PER_TEST_S = 120  # with pytest-timeout (the GPU image has it), a test that hangs (a stuck NCCL call) fails alone


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a dry run")
    parser.add_argument("--data", type=Path, default=BUNDLE_DATA if BUNDLE_DATA.is_dir() else DEFAULT_DATA,
                        help="MSD folder holding the case (default .gpu/data, else the shared Task02 folder)")
    parser.add_argument("--case", default="la_003", help="the 256x256x130 case (default la_003)")
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu_check", help="folder for gpu_check.json")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per volume after the warm-up")
    parser.add_argument("--quick", action="store_true", help="small volumes, one timed run, fast tests only")
    return parser.parse_args(argv)


def environment(device: torch.device) -> dict[str, Any]:
    """The machine, versions, the GPU and where atriumseg was imported from."""
    import atriumseg

    info = {**machine(device), "atriumseg": atriumseg.__version__,
            "atriumseg_from": str(Path(atriumseg.__file__).parent), "torch_cuda": torch.version.cuda,
            "cuda_available": torch.cuda.is_available()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_mb=props.total_memory / 2**20, capability=f"{props.major}.{props.minor}",
                    cudnn=torch.backends.cudnn.version(), bf16_supported=torch.cuda.is_bf16_supported())
    return info


def limited(command: list[str], seconds: float, **kwargs: Any) -> subprocess.CompletedProcess:
    """``subprocess.run`` in a session of its own, whose every process (workers included) is ended after ``seconds``."""
    with subprocess.Popen(command, cwd=ROOT, start_new_session=True, text=True, **kwargs) as process:
        try:
            stdout, stderr = process.communicate(timeout=seconds)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def time_limit(name: str, device: torch.device) -> float:
    """Seconds the ``name`` stage may take on ``device``."""
    return TIMEOUTS_S[name] * (1 if device.type == "cuda" else CPU_SLOWER)


def junit_counts(report: Path) -> dict[str, Any]:
    """Passed, failed, errored and skipped tests from pytest's JUnit XML, with each failure's first line."""
    counts: dict[str, Any] = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "problems": []}
    for case in ET.parse(report).getroot().iter("testcase"):
        outcome = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        key = {"failure": "failed", "error": "errors", "skipped": "skipped"}.get(getattr(outcome, "tag", ""), "passed")
        counts[key] += 1
        if key in ("failed", "errors", "skipped"):
            counts["problems"].append({"test": case.get("name"), "outcome": key,
                                       "message": ((outcome.get("message") or "").splitlines() or [""])[0][:300]})
    return counts


def run_tests(name: str, args: argparse.Namespace, device: torch.device, scratch: Path) -> dict[str, Any]:
    """One selection of the device tests on ``device``, as a pytest subprocess with a time limit; log in OUT."""
    report = scratch / f"{name}.xml"
    per_test = ["--timeout", str(PER_TEST_S)] if importlib.util.find_spec("pytest_timeout") else []
    command = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", TEST_FILE, "--device", str(device),
               "-m", TEST_SELECTIONS[name], f"--junitxml={report}", *per_test]
    started = time.perf_counter()
    with (args.out / f"{name}.log").open("w") as out:
        done = limited(command, time_limit(name, device), stdout=out, stderr=subprocess.STDOUT)
    result = {"command": " ".join(command[1:]), "exit_code": done.returncode,
              "seconds": round(time.perf_counter() - started, 1), "log": f"{name}.log"}
    return {**result, **junit_counts(report)} if report.is_file() else result


def in_memory(path: Path) -> nib.Nifti1Image:
    """The image read and decompressed once, so that timing leaves reading out."""
    image = nib.load(path)
    return nib.Nifti1Image(np.asarray(image.dataobj, dtype=np.float32), image.affine, image.header)


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def timed_masks(image: nib.Nifti1Image, segmenter: Any, device: torch.device, runs: int) -> tuple[np.ndarray, list]:
    """The mask of ``image`` and the seconds of each of ``runs`` segmentations (synchronised)."""
    from atriumseg import segment

    seconds, mask = [], None
    for _ in range(runs):
        started = _now(device)
        result = segment(image, segmenter, assume_orientation=TRUE_ORIENTATION)
        seconds.append(_now(device) - started)
        mask = np.asarray(result.dataobj, dtype=np.uint8)
    return mask, seconds


def inference_volume(image: nib.Nifti1Image, on_device: Any, on_cpu: Any, repeats: int) -> dict[str, Any]:
    """One volume: warm-up, timed runs, peak GPU memory, the CPU baseline, and one run of a second copy of the
    model whose network is clocked (its synchronising hooks stay off the timed model)."""
    from atriumseg import Segmenter

    device = on_device.device
    timed_masks(image, on_device, device, 1)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    mask, seconds = timed_masks(image, on_device, device, repeats)
    peak_mb = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    reserved_mb = torch.cuda.max_memory_reserved(device) / 2**20 if device.type == "cuda" else None
    clocked = Segmenter.from_path(None, device=device)
    clock = NetworkClock(clocked.network, device)
    timed_masks(image, clocked, device, 1)
    reference, cpu_seconds = timed_masks(image, on_cpu, torch.device("cpu"), 1)
    return {"shape": list(image.shape), "seconds_best": min(seconds), "seconds_median": median(seconds),
            "seconds_all": seconds, "network_seconds": clock.seconds, "network_slices": clock.slices,
            "gpu_peak_allocated_mb": peak_mb, "gpu_peak_reserved_mb": reserved_mb, "foreground_voxels": int(mask.sum()),
            "cpu_seconds": cpu_seconds[0], "speedup_vs_cpu": cpu_seconds[0] / min(seconds),
            "cpu_foreground_voxels": int(reference.sum()), "dice_vs_cpu": dice(mask, reference)}


def run_inference(args: argparse.Namespace, device: torch.device, scratch: Path) -> dict[str, Any]:
    """Both volumes through the built-in model on ``device`` and on the CPU."""
    from atriumseg import Segmenter

    case = args.data / "imagesTr" / f"{args.case}.nii.gz"
    if not case.is_file():
        raise FileNotFoundError(f"{case} is missing: run `python -m benchmarks.gpu_bundle` first, or pass --data")
    on_device, on_cpu = Segmenter.from_path(None, device=device), Segmenter.from_path(None, device="cpu")
    results = {}
    for name, shape, spacing in QUICK_VOLUMES if args.quick else VOLUMES:
        path = make_volume([case], shape, spacing, scratch / f"{name}.nii.gz")
        log.info("inference: %s (%s)", name, path.name)
        results[name] = {"source": args.case if path == case else f"cut from {args.case} at {spacing} mm in-plane",
                         **inference_volume(in_memory(path), on_device, on_cpu, 1 if args.quick else args.repeats)}
    return {"model": "built-in", "orientation": TRUE_ORIENTATION, "volumes": results}


def run_training(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """``benchmarks.training`` on ``device`` with a time limit; its slices per second per configuration."""
    command = [sys.executable, "-m", "benchmarks.training", "--device", str(device), "--data", str(args.data),
               *(["--quick"] if args.quick else [])]
    started = time.perf_counter()
    done = limited(command, time_limit("training", device), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if done.returncode != 0:
        raise RuntimeError(f"benchmarks.training failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    record = json.loads((RESULTS / f"training{'-quick' if args.quick else ''}.json").read_text())

    def rates(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"configuration": r["label"], "slices_per_s": r["slices"] / r["seconds"],
                 "gpu_peak_mb": r.get("cuda_peak_mb"), "peak_rss_mb": r["peak_rss_mb"]} for r in rows]

    return {"command": " ".join(command[1:]), "seconds": round(time.perf_counter() - started, 1),
            "network": record["network"], "step": rates(record["step"]), "train": rates(record["train"]),
            "matmul_flop_per_s": record["matmul_flop_per_s"], "tables": done.stdout}


def targets(record: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Each target with its figure and whether it is met (None where it does not apply to this run)."""
    volumes = record.get("inference", {}).get("volumes", {})
    timed = volumes.get(VOLUMES[0][0], {}).get("seconds_best")
    runs = [record[name] for name in TEST_SELECTIONS if name in record]
    found = {
        f"{VOLUMES[0][0]} under {TARGET_SECONDS} s after warm-up (H100/H200-class GPU)": (
            timed, None if device.type != "cuda" or timed is None else timed < TARGET_SECONDS),
        f"every mask within Dice {TARGET_DICE} of the CPU's": (
            {name: v["dice_vs_cpu"] for name, v in volumes.items()},
            bool(volumes) and all(v["dice_vs_cpu"] >= TARGET_DICE for v in volumes.values())),
        "every device test passes, none skipped": (
            {k: sum(run.get(k, 0) for run in runs) for k in ("passed", "failed", "errors", "skipped")},
            bool(runs) and all(run.get("exit_code") == 0 and run.get("passed", 0) > 0 and not run.get("skipped")
                               for run in runs)),
    }
    return {name: {"measured": measured, "met": met} for name, (measured, met) in found.items()}


def stage(record: dict[str, Any], name: str, work: Callable[[], dict[str, Any]], out: Path) -> None:
    """Run one stage into ``record[name]``; a failure is recorded with its reason and the next stage goes on."""
    log.info("stage: %s", name)
    started = time.perf_counter()
    try:
        record[name] = work()
    except Exception as err:  # recorded in the JSON with its traceback; the check then exits non-zero
        log.error("%s failed: %s", name, err)
        record[name] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-4000:]}
    record.setdefault("stage_seconds", {})[name] = round(time.perf_counter() - started, 1)
    (out / "gpu_check.json").write_text(json.dumps(record, indent=2, default=str) + "\n")


def report(record: dict[str, Any]) -> None:
    """The figures as tables on stdout."""
    volumes = record.get("inference", {}).get("volumes", {})
    print_table(f"Inference on {record['device']} (built-in model; seconds after warm-up, nothing read or written)",
                ["volume", "best s", "median s", "network s", "GPU peak MB", "CPU s", "vs CPU", "Dice vs CPU"],
                [[n, f"{v['seconds_best']:.3f}", f"{v['seconds_median']:.3f}", f"{v['network_seconds']:.3f}",
                  "-" if v["gpu_peak_allocated_mb"] is None else f"{v['gpu_peak_allocated_mb']:.0f}",
                  f"{v['cpu_seconds']:.2f}", f"{v['speedup_vs_cpu']:.1f}x", f"{v['dice_vs_cpu']:.5f}"]
                 for n, v in volumes.items()] or [["-"] * 8])
    training = record.get("training", {})
    print_table("Training throughput", ["measurement", "configuration", "slices/s"],
                [[kind, r["configuration"], f"{r['slices_per_s']:.1f}"]
                 for kind in ("step", "train") for r in training.get(kind, [])] or [["-"] * 3])
    print_table("Targets", ["target", "measured", "met"],
                [[name, json.dumps(t["measured"], default=str), {True: "yes", False: "NO", None: "n/a"}[t["met"]]]
                 for name, t in record["targets"].items()])


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    setup_logging()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"gpu_check: --device {args.device} asked for, but torch {torch.__version__} sees no CUDA "
                         "device; run it on a lent GPU machine, or pass --device cpu for a dry run")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="atriumseg-gpu-check-") as tmp:
        record = check(args, device, Path(tmp))
    report(record)
    log.info("wrote %s", args.out / "gpu_check.json")
    failed = [n for n, v in record.items() if isinstance(v, dict) and "error" in v]
    return 1 if failed or any(t["met"] is False for t in record["targets"].values()) else 0


def check(args: argparse.Namespace, device: torch.device, scratch: Path) -> dict[str, Any]:
    """Every stage in turn, the JSON rewritten after each; the record with its targets."""
    record: dict[str, Any] = {
        "check": "gpu_check", "command": " ".join(["python -m benchmarks.gpu_check", *sys.argv[1:]]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "device": str(device), "quick": args.quick,
        "data": str(args.data), "case": args.case,
    }
    stage(record, "environment", lambda: environment(device), args.out)
    for name in TEST_SELECTIONS if not args.quick else ["tests"]:
        stage(record, name, lambda name=name: run_tests(name, args, device, scratch), args.out)
    stage(record, "inference", lambda: run_inference(args, device, scratch), args.out)
    stage(record, "training", lambda: run_training(args, device), args.out)
    record["targets"] = targets(record, device)
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (args.out / "gpu_check.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    return record


if __name__ == "__main__":
    sys.exit(main())
