"""Whole-volume inference through the public ``segment`` path against a float32 slice-by-slice loop.

Both paths read the same NIfTI file, preprocess with the model card's chain, invert to the input
grid, keep the largest component and write the mask; only the network call differs. The baseline
calls the same network in float32 on every slice, one at a time, in a plain Python loop (no
batching, no channels_last); ``segment`` runs the package's default path (batched slices,
channels_last, bfloat16 autocast where the CPU has avx512-bf16, and focused inference: a locating
pass on one whole slice every 20 mm, then only the atrium's in-plane box on the slab that holds
it); "segment, focus off" is the same with ``Segmenter(focus=False)``, to separate the two gains.
Slices per second count the volume's slices in the model's frame; "net slices" are the slices the
network actually ran on. Each path runs in a fresh process, so its peak RSS is its own. Reported
per volume: seconds, slices per second and peak memory with their ratios to the baseline, the
share of time outside the network and where it goes, the Dice between the two masks, and the
network FLOP rate as a share of a large bfloat16 matmul on the same machine. A final fresh
process segments a 512x512x300 volume to check it stays within 4 GB.

    python -m benchmarks.inference [--quick] [--model PATH] [--data FOLDER] [--device auto]
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

from benchmarks import baseline
from benchmarks.common import (
    DEFAULT_DATA,
    TRUE_ORIENTATION,
    cuda_peak_mb,
    describe_rates,
    dice,
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
from benchmarks.timing import NetworkClock, StageClock

log = logging.getLogger("benchmarks.inference")

# (name, shape, in-plane spacing in mm): the volumes timed against the baseline, and the memory check.
VOLUMES = [("256x256x130", (256, 256, 130), 1.25), ("512x512x100", (512, 512, 100), 0.625)]
MEMORY_VOLUME = ("512x512x300", (512, 512, 300), 0.625)
QUICK_VOLUMES = [("64x64x16", (64, 64, 16), 1.25), ("128x128x12", (128, 128, 12), 0.625)]
QUICK_MEMORY_VOLUME = ("128x128x40", (128, 128, 40), 0.625)
TARGET_SPEEDUP, TARGET_DICE, TARGET_OUTSIDE, MEMORY_LIMIT_MB = 5.0, 0.99, 0.25, 4096.0
FAST, WHOLE, BASELINE = "segment", "segment, focus off", "float32-loop"
METHODS = (BASELINE, WHOLE, FAST)


def _stage_targets() -> list[tuple[str, object, str]]:
    """The callables whose time is reported as a stage, for both paths."""
    from monai.inferers import SliceInferer
    from monai.transforms import Compose, KeepLargestConnectedComponent

    import atriumseg.api
    from atriumseg.pipeline.inference import restore
    from atriumseg.pipeline.io import volumes, writing
    from benchmarks import baseline

    return [
        ("read", atriumseg.api, "read_image"),
        ("read", volumes, "read_image"),
        ("preprocess", Compose, "__call__"),
        ("slicing", SliceInferer, "__call__"),
        ("slicing", baseline, "slice_loop"),
        ("invert", restore, "restore"),
        ("largest component", KeepLargestConnectedComponent, "__call__"),
        ("write", atriumseg.api, "write_image"),
        ("write", writing, "write_image"),
    ]


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Segment ``spec['image']`` ``spec['repeats']`` times with one path, in this fresh process."""
    from atriumseg.api import segment
    from atriumseg.models.checkpoint import load_model
    from atriumseg.pipeline.inference.device import resolve_device
    from atriumseg.pipeline.inference.segmenter import Segmenter

    device = resolve_device(spec["device"])
    image, output, orientation = Path(spec["image"]), Path(spec["output"]), spec["orientation"]
    if spec["method"] in (FAST, WHOLE):
        segmenter = Segmenter.from_path(Path(spec["model"]), device=device, focus=spec["method"] == FAST)
        network = segmenter.network

        def run() -> np.ndarray:
            result = segment(image, segmenter, assume_orientation=orientation, output=output, overwrite=True)
            return np.asarray(result.dataobj, dtype=np.uint8)

    else:
        network, card = load_model(Path(spec["model"]))
        network = network.to(device)

        def run() -> np.ndarray:
            return baseline.float32_baseline(network, card, image, orientation, output, device)

    rss_ready = peak_rss_mb()
    clock, stages, runs = NetworkClock(network, device), StageClock(), []
    with stages.patched(_stage_targets()):
        for _ in range(spec["repeats"]):
            clock.reset()
            stages.reset()
            t0 = _now(device)
            mask = run()
            seconds = _now(device) - t0
            runs.append({"seconds": seconds, "network_s": clock.seconds, "slices": clock.slices,
                         "forward_calls": clock.calls, "stages_s": dict(stages.seconds)})
    np.save(spec["mask"], mask)
    return {"runs": runs, "slice_input": list(clock.input_shape), "rss_ready_mb": rss_ready,
            "peak_rss_mb": peak_rss_mb(), "cuda_peak_mb": cuda_peak_mb(device)}


def _summary(result: dict[str, Any], flops_per_slice: float, peak_rate: float, volume_slices: int) -> dict[str, Any]:
    """The fastest run of a worker with its derived figures: stages, outside share, FLOP rate.

    ``volume_slices`` is the volume's slice count in the model's frame (what the baseline loop runs);
    the fast path may run the network on fewer (focused inference), so its rate is in volume slices.
    """
    best = min(result["runs"], key=lambda r: r["seconds"])
    seconds, network = best["seconds"], best["network_s"]
    stages = dict(best["stages_s"])
    slicing = stages.pop("slicing", 0.0)
    breakdown = {
        "read": stages.get("read", 0.0),
        "preprocess": stages.get("preprocess", 0.0),
        "network": network,
        "slicing overhead": slicing - network,
        "invert": stages.get("invert", 0.0),
        "largest component": stages.get("largest component", 0.0),
        "write": stages.get("write", 0.0),
    }
    breakdown["other"] = seconds - sum(breakdown.values())
    flops = flops_per_slice * best["slices"]
    return {
        "seconds": seconds,
        "all_seconds": [r["seconds"] for r in result["runs"]],
        "network_slices": best["slices"],
        "slices_per_s": volume_slices / seconds,
        "network_s": network,
        "outside_share": (seconds - network) / seconds,
        "breakdown_s": breakdown,
        "peak_rss_mb": result["peak_rss_mb"],
        "rss_before_volume_mb": result["rss_ready_mb"],
        "cuda_peak_mb": result["cuda_peak_mb"],
        "network_gflop": flops / 1e9,
        "gflop_per_s": flops / seconds / 1e9,
        "share_of_bf16_matmul": flops / seconds / peak_rate,
        "network_share_of_bf16_matmul": flops / network / peak_rate,
    }


def measure(name: str, image: Path, args: argparse.Namespace, model: Path, scratch: Path,
            repeats: int, rates: dict[str, float]) -> dict[str, Any]:
    """Both paths on one volume, each in a fresh process; the Dice between their masks."""
    from atriumseg.models.checkpoint import load_model

    network, _ = load_model(model)
    out: dict[str, Any] = {"volume": name, "file": str(image)}
    masks, volume_slices = {}, 0
    for method in METHODS:
        log.info("%s: %s (%d run%s)", name, method, repeats, "s" if repeats > 1 else "")
        tag = method.replace(" ", "").replace(",", "-")
        masks[method] = scratch / f"{name}-{tag}.npy"
        result = run_worker("benchmarks.inference", {
            "method": method, "image": str(image), "model": str(model), "device": args.device, "repeats": repeats,
            "orientation": TRUE_ORIENTATION, "output": str(scratch / f"{name}-{tag}-mask.nii.gz"),
            "mask": str(masks[method]),
        })
        per_slice = network_flops(network, (1, *result["slice_input"]))
        volume_slices = volume_slices or min(r["slices"] for r in result["runs"])
        out[method] = _summary(result, per_slice, rates["bfloat16"], volume_slices)
        out["slice_input"], out["volume_slices"] = result["slice_input"], volume_slices
    out["dice_vs_float32"] = dice(np.load(masks[FAST]), np.load(masks[BASELINE]))
    out["dice_focus_off_vs_float32"] = dice(np.load(masks[WHOLE]), np.load(masks[BASELINE]))
    base, fast = out[BASELINE], out[FAST]
    out["speedup"] = base["seconds"] / fast["seconds"]
    out["network_speedup"] = base["network_s"] / fast["network_s"]
    out["memory_ratio"] = fast["peak_rss_mb"] / base["peak_rss_mb"]
    return out


def memory_check(image: Path, args: argparse.Namespace, model: Path, scratch: Path) -> dict[str, Any]:
    """Segment ``image`` once through ``segment`` in a fresh process and report its peak RSS."""
    log.info("memory check: %s", image.name)
    result = run_worker("benchmarks.inference", {
        "method": FAST, "image": str(image), "model": str(model), "device": args.device, "repeats": 1,
        "orientation": TRUE_ORIENTATION, "output": str(scratch / "memory-mask.nii.gz"),
        "mask": str(scratch / "memory-mask.npy"),
    })
    run = result["runs"][0]
    return {"seconds": run["seconds"], "network_slices": run["slices"], "peak_rss_mb": result["peak_rss_mb"],
            "rss_before_volume_mb": result["rss_ready_mb"], "cuda_peak_mb": result["cuda_peak_mb"],
            "limit_mb": MEMORY_LIMIT_MB, "within_limit": result["peak_rss_mb"] <= MEMORY_LIMIT_MB}


def report(rows: list[dict[str, Any]], memory: dict[str, Any], header: str) -> dict[str, bool]:
    """Print the tables; return which targets are met."""
    print(header)
    speed = []
    for r in rows:
        for method in METHODS:
            m, base = r[method], r[BASELINE]
            speed.append([
                r["volume"], method, f"{m['seconds']:.2f}", "/".join(f"{t:.1f}" for t in m["all_seconds"]),
                f"{base['seconds'] / m['seconds']:.2f}x", f"{m['slices_per_s']:.2f}",
                f"{m['slices_per_s'] / base['slices_per_s']:.2f}x", f"{m['network_slices']}/{r['volume_slices']}",
                f"{m['network_s']:.2f}", f"{base['network_s'] / m['network_s']:.2f}x",
                f"{100 * m['outside_share']:.1f}%", f"{m['peak_rss_mb']:.0f}",
                f"{m['peak_rss_mb'] / base['peak_rss_mb']:.2f}x",
                "-" if m["cuda_peak_mb"] is None else f"{m['cuda_peak_mb']:.0f}",
                f"{m['gflop_per_s']:.0f}", f"{100 * m['share_of_bf16_matmul']:.1f}%",
                f"{100 * m['network_share_of_bf16_matmul']:.1f}%",
            ])
    print_table("Whole-volume segmentation (best of the runs; ratios against the float32 loop)",
                ["volume", "path", "s/volume", "runs s", "speed", "slices/s", "ratio", "net slices", "network s",
                 "net speed",
                 "outside net", "peak RSS MB", "RSS ratio", "CUDA MB", "GFLOP/s", "of bf16 mm", "net of bf16 mm"],
                speed)
    stages = list(rows[0][FAST]["breakdown_s"])
    print_table("Where the time goes (seconds; outside = everything but the network)",
                ["volume", "path", *stages, "outside share"],
                [[r["volume"], method, *(f"{r[method]['breakdown_s'][s]:.2f}" for s in stages),
                  f"{100 * r[method]['outside_share']:.1f}%"] for r in rows for method in METHODS])
    print_table(f"Agreement of the fast path with float32 (target Dice >= {TARGET_DICE})",
                ["volume", "Dice(segment, float32 loop)", "Dice(focus off, float32 loop)"],
                [[r["volume"], f"{r['dice_vs_float32']:.4f}", f"{r['dice_focus_off_vs_float32']:.4f}"] for r in rows])
    print_table(f"Memory: one volume through segment() in a fresh process (limit {MEMORY_LIMIT_MB:.0f} MB)",
                ["volume", "network slices", "seconds", "RSS before volume MB", "peak RSS MB", "CUDA MB",
                 "within limit"],
                [[memory["volume"], str(memory["network_slices"]), f"{memory['seconds']:.1f}",
                  f"{memory['rss_before_volume_mb']:.0f}", f"{memory['peak_rss_mb']:.0f}",
                  "-" if memory["cuda_peak_mb"] is None else f"{memory['cuda_peak_mb']:.0f}",
                  "yes" if memory["within_limit"] else "NO"]])
    first = rows[0]
    checks = [
        (f"{first['volume']}: >= {TARGET_SPEEDUP:.0f}x the float32 slice loop", f"{first['speedup']:.2f}x",
         first["speedup"] >= TARGET_SPEEDUP),
        (f"Dice vs float32 >= {TARGET_DICE} (every volume)", ", ".join(f"{r['dice_vs_float32']:.4f}" for r in rows),
         all(r["dice_vs_float32"] >= TARGET_DICE for r in rows)),
        *((f"{r['volume']}: time outside the network < {100 * TARGET_OUTSIDE:.0f}% (segment)",
           f"{100 * r[FAST]['outside_share']:.1f}%", r[FAST]["outside_share"] < TARGET_OUTSIDE) for r in rows),
        (f"{memory['volume']} within {MEMORY_LIMIT_MB:.0f} MB RSS", f"{memory['peak_rss_mb']:.0f} MB",
         memory["within_limit"]),
    ]
    print_table("Targets", ["target", "measured", "met"], [[t, m, "yes" if ok else "NO"] for t, m, ok in checks])
    return {t: ok for t, _, ok in checks}


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line; ``--worker`` is how the benchmark calls itself in a fresh process."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inference", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny volumes and one run each: a smoke test")
    parser.add_argument("--model", help="model folder (default: the built-in model, else an untrained network)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MSD-layout folder of real volumes")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--repeats", type=int, default=3, help="runs per path and volume; the best counts")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its tables."""
    args = parse(argv)
    if serve_as_worker(args.worker, worker):
        return
    from atriumseg.pipeline.inference.device import resolve_device

    device = resolve_device(args.device)
    volumes, memory_volume = (QUICK_VOLUMES, QUICK_MEMORY_VOLUME) if args.quick else (VOLUMES, MEMORY_VOLUME)
    repeats = 1 if args.quick else args.repeats
    with tempfile.TemporaryDirectory(prefix="atriumseg-bench-") as tmp:
        scratch = Path(tmp)
        model, origin = resolve_model(args.model, scratch)
        sources = source_images(args.data, scratch)
        rates = peak_rates(device, args.quick)
        rows = []
        for name, shape, spacing in volumes:
            image = make_volume(sources, shape, spacing, scratch / f"{name}.nii.gz")
            rows.append(measure(name, image, args, model, scratch, repeats, rates))
        name, shape, spacing = memory_volume
        memory = {"volume": name, **memory_check(make_volume(sources, shape, spacing, scratch / f"{name}.nii.gz"),
                                                  args, model, scratch)}
    info = machine(device)
    header = (f"machine: {info['cpu']}, {info['cores']} cores, {info['torch_threads']} torch threads, "
              f"{info['device']}; {describe_rates(rates)}; model: {origin}")
    targets = report(rows, memory, header)
    path = write_results("inference", {"quick": args.quick, "machine": info, "model": origin,
                                       "matmul_flop_per_s": rates, "volumes": rows,
                                       "memory": memory, "targets": targets})
    log.info("wrote %s", path)


if __name__ == "__main__":
    main()
