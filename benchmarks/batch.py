"""Batch throughput: cases per minute over a folder of 20 volumes, with and without reading ahead.

``run_batch`` always reads ahead: ``BatchOptions.workers`` is the number of reader threads, and
``workers=0`` still means one reader thread (``max(1, workers)``) keeping up to two cases queued
behind the one being segmented; masks are written by one writer thread in both cases. So the
honest "prefetch off" reference is a plain sequential loop over the public ``segment`` (read,
segment, write, one case after the other), timed here beside ``workers=0`` and ``workers=2``.
Each configuration runs in a fresh process with one Segmenter; the folder's files are read once
beforehand so every configuration finds them in the page cache.

    python -m benchmarks.batch [--quick] [--model PATH] [--data FOLDER] [--cases 20] [--device auto]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    DEFAULT_DATA,
    TRUE_ORIENTATION,
    cuda_peak_mb,
    describe_rates,
    machine,
    make_volume,
    network_flops,
    peak_rates,
    peak_rss_mb,
    print_table,
    resolve_model,
    run_worker,
    serve_as_worker,
    source_images,
    write_results,
)
from benchmarks.timing import NetworkClock

log = logging.getLogger("benchmarks.batch")

# (label, run_batch workers or None for the sequential loop over segment())
CONFIGS = [("sequential segment() loop", None), ("run_batch workers=0", 0), ("run_batch workers=2", 2)]


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Segment every volume of ``spec['folder']`` into ``spec['output']`` with one configuration."""
    from atriumseg.api import segment
    from atriumseg.pipeline.batch.options import BatchOptions
    from atriumseg.pipeline.batch.runner import run_batch
    from atriumseg.pipeline.inference.device import resolve_device
    from atriumseg.pipeline.inference.segmenter import Segmenter
    from atriumseg.pipeline.io.names import case_name

    device = resolve_device(spec["device"])
    segmenter = Segmenter.from_path(Path(spec["model"]), device=device)
    clock = NetworkClock(segmenter.network, device)
    folder, output = Path(spec["folder"]), Path(spec["output"])
    images = sorted(folder.glob("*.nii.gz"))
    started = time.perf_counter()
    if spec["workers"] is None:
        for image in images:
            mask = output / f"{case_name(image)}.nii.gz"  # where run_batch puts it
            segment(image, segmenter, assume_orientation=TRUE_ORIENTATION, output=mask)
        ok = len(images)
    else:
        options = BatchOptions(output=output, assume_orientation=TRUE_ORIENTATION, workers=spec["workers"],
                               show_progress=False)
        ok = sum(r.status == "ok" for r in run_batch(segmenter, [folder], options).results)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "cases": len(images), "ok": ok, "network_s": clock.seconds, "slices": clock.slices,
            "slice_input": list(clock.input_shape), "peak_rss_mb": peak_rss_mb(), "cuda_peak_mb": cuda_peak_mb(device)}


def build_folder(sources: list[Path], count: int, quick: bool, folder: Path) -> Path:
    """``count`` volumes named case_NN: the real ones in turn (repeated to reach ``count``), or small crops."""
    if quick:
        sources = [make_volume(sources, (64, 64, 16), 1.25, folder.with_name("crop.nii.gz"))]
    folder.mkdir(parents=True)
    for index in range(count):
        shutil.copyfile(sources[index % len(sources)], folder / f"case_{index:02d}.nii.gz")
    for path in folder.iterdir():
        path.read_bytes()
    return folder


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line; ``--worker`` is how the benchmark calls itself in a fresh process."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.batch", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="three tiny volumes: a smoke test")
    parser.add_argument("--model", help="model folder (default: the built-in model, else an untrained network)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MSD-layout folder of real volumes")
    parser.add_argument("--cases", type=int, default=20, help="volumes in the folder")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its table."""
    args = parse(argv)
    if serve_as_worker(args.worker, worker):
        return
    from atriumseg.models.checkpoint import load_model
    from atriumseg.pipeline.inference.device import resolve_device

    device = resolve_device(args.device)
    count = 3 if args.quick else args.cases
    rates = peak_rates(device, args.quick)
    results = []
    with tempfile.TemporaryDirectory(prefix="atriumseg-bench-") as tmp:
        scratch = Path(tmp)
        model, origin = resolve_model(args.model, scratch)
        folder = build_folder(source_images(args.data, scratch), count, args.quick, scratch / "inputs")
        for label, workers in CONFIGS:
            log.info("%d cases: %s", count, label)
            result = run_worker("benchmarks.batch", {"folder": str(folder), "output": str(scratch / f"out-{workers}"),
                                                     "model": str(model), "device": args.device, "workers": workers})
            results.append({"label": label, "workers": workers, **result})
        network, _ = load_model(model)
        per_slice = network_flops(network, (1, *results[0]["slice_input"]))
    base = results[0]
    rows = []
    for r in results:
        per_minute = 60.0 * r["cases"] / r["seconds"]
        flops = per_slice * r["slices"]
        r.update(cases_per_minute=per_minute, network_share=r["network_s"] / r["seconds"],
                 gflop_per_s=flops / r["seconds"] / 1e9, share_of_bf16_matmul=flops / r["seconds"] / rates["bfloat16"])
        rows.append([
            r["label"], f"{r['ok']}/{r['cases']}", f"{r['seconds']:.1f}", f"{per_minute:.2f}",
            f"{per_minute / (60.0 * base['cases'] / base['seconds']):.2f}x", f"{r['seconds'] / r['cases']:.2f}",
            f"{100 * r['network_share']:.1f}%", f"{r['peak_rss_mb']:.0f}",
            "-" if r["cuda_peak_mb"] is None else f"{r['cuda_peak_mb']:.0f}",
            f"{r['gflop_per_s']:.0f}", f"{100 * r['share_of_bf16_matmul']:.1f}%",
        ])
    info = machine(device)
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['torch_threads']} torch threads, "
          f"{info['device']}; {describe_rates(rates)}; model: {origin}")
    print_table(f"Batch of {count} volumes (ratios against the sequential loop, which reads nothing ahead)",
                ["configuration", "ok", "seconds", "cases/min", "ratio", "s/case", "network share", "peak RSS MB",
                 "CUDA MB", "GFLOP/s", "of bf16 mm"], rows)
    path = write_results("batch", {"quick": args.quick, "machine": info, "model": origin, "matmul_flop_per_s": rates,
                                   "gflop_per_slice": per_slice / 1e9, "configurations": results})
    log.info("wrote %s", path)


if __name__ == "__main__":
    main()
