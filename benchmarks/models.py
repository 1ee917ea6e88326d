"""End-to-end seconds per volume of several models (model or ensemble folders), the first one the baseline.

Each model segments the inference benchmark's volumes (256x256x130 at 1.25 mm, 512x512x100 at
0.625 mm, cut from a real scan) through the public ``segment`` path in a fresh process: read,
focused inference, restore to the input grid, largest component, mask written. The best of the
runs counts, after one warm-up. Reported per volume and model: seconds and their ratio to the first
model, network seconds summed over an ensemble's members, peak RSS, and the Dice between each
model's mask and the first model's. This is how issue 18's speed bound (the default model at most
2x the shipped one's time) is measured. A model named ``FOLDER+tta`` runs as ``segment --tta`` does (test-time
augmentation), to price that option against the same model without it.

    python -m benchmarks.models --models BASELINE MODEL... [--repeats 3] [--bound 2.0] [--quick]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import (
    DEFAULT_DATA,
    TRUE_ORIENTATION,
    dice,
    machine,
    make_volume,
    peak_rss_mb,
    print_table,
    run_worker,
    serve_as_worker,
    source_images,
    write_results,
)
from benchmarks.inference import QUICK_VOLUMES, VOLUMES
from benchmarks.timing import NetworkClock

log = logging.getLogger("benchmarks.models")
TTA_SUFFIX = "+tta"


def model_and_tta(entry: str) -> tuple[str, bool]:
    """A ``--models`` entry's model folder, and whether it runs with test-time augmentation (``FOLDER+tta``)."""
    return (entry.removesuffix(TTA_SUFFIX), True) if entry.endswith(TTA_SUFFIX) else (entry, False)


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Segment ``spec['image']`` once to warm up, then ``spec['repeats']`` times, in this fresh process."""
    from atriumseg.api import segment
    from atriumseg.pipeline.inference.segmenter import Segmenter

    model, tta = model_and_tta(spec["model"])
    segmenter = Segmenter.from_path(Path(model), device="cpu")
    clocks = [NetworkClock(member.network, torch.device("cpu")) for member in segmenter.members]
    image, output = Path(spec["image"]), Path(spec["output"])

    def run() -> np.ndarray:
        result = segment(image, segmenter, assume_orientation=TRUE_ORIENTATION, tta=tta, output=output,
                         overwrite=True)
        return np.asarray(result.dataobj, dtype=np.uint8)

    run()
    runs = []
    for _ in range(spec["repeats"]):
        for clock in clocks:
            clock.reset()
        started = time.perf_counter()
        mask = run()
        runs.append({"seconds": time.perf_counter() - started, "network_s": sum(c.seconds for c in clocks),
                     "slices": sum(c.slices for c in clocks)})
    np.save(spec["mask"], mask)
    return {"runs": runs, "members": len(clocks), "peak_rss_mb": peak_rss_mb()}


def measure(models: list[str], image: Path, repeats: int, scratch: Path) -> list[dict[str, Any]]:
    """Every model on ``image``, each in a fresh process; best run, and Dice against the first model's mask."""
    rows = []
    for index, model in enumerate(models):
        mask = scratch / f"{image.stem}-{index}.npy"
        result = run_worker("benchmarks.models", {
            "model": model, "image": str(image), "repeats": repeats, "mask": str(mask),
            "output": str(scratch / f"{image.stem}-{index}-mask.nii.gz"),
        })
        best = min(result["runs"], key=lambda r: r["seconds"])
        rows.append({"model": model, **best, "all_seconds": [r["seconds"] for r in result["runs"]],
                     "members": result["members"], "peak_rss_mb": result["peak_rss_mb"], "mask": str(mask)})
    first = np.load(rows[0]["mask"])
    for row in rows:
        row["dice_vs_first"] = dice(np.load(row.pop("mask")), first)
    return rows


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line; ``--worker`` is how the benchmark calls itself in a fresh process."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.models", description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+",
                        help="model or ensemble folders (FOLDER+tta: with test-time augmentation); the first is the "
                        "baseline")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MSD-layout folder of real volumes")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per model and volume; the best counts")
    parser.add_argument("--bound", type=float, default=2.0, help="largest allowed time ratio to the first model")
    parser.add_argument("--quick", action="store_true", help="tiny volumes and one run each: a smoke test")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.worker and not args.models:
        parser.error("--models is required")
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its table and the speed bound."""
    args = parse(argv)
    if serve_as_worker(args.worker, worker):
        return
    volumes, repeats = (QUICK_VOLUMES, 1) if args.quick else (VOLUMES, args.repeats)
    results = {}
    with tempfile.TemporaryDirectory(prefix="atriumseg-bench-") as tmp:
        scratch = Path(tmp)
        sources = source_images(args.data, scratch)
        for name, shape, spacing in volumes:
            log.info("%s: %d models, %d runs each", name, len(args.models), repeats)
            image = make_volume(sources, shape, spacing, scratch / f"{name}.nii.gz")
            results[name] = measure(args.models, image, repeats, scratch)
    table, within = [], {}
    for name, rows in results.items():
        base = rows[0]["seconds"]
        for row in rows:
            ratio = row["seconds"] / base
            within[f"{name}: {row['model']}"] = ratio <= args.bound
            table.append([name, row["model"], str(row["members"]), f"{row['seconds']:.2f}",
                          "/".join(f"{s:.2f}" for s in row["all_seconds"]), f"{ratio:.2f}x",
                          f"{row['network_s']:.2f}", str(row["slices"]), f"{row['peak_rss_mb']:.0f}",
                          f"{row['dice_vs_first']:.4f}", "yes" if ratio <= args.bound else "NO"])
    info = machine(torch.device("cpu"))
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['torch_threads']} torch threads")
    print_table(f"segment end to end (best run after a warm-up; ratios against the first model, bound {args.bound}x)",
                ["volume", "model", "members", "s/volume", "runs s", "vs first", "network s", "net slices",
                 "peak RSS MB", "Dice vs first", "within bound"], table)
    log.info("wrote %s", write_results("models", {"quick": args.quick, "machine": info, "bound": args.bound,
                                                  "volumes": results, "within": within}))


if __name__ == "__main__":
    main()
