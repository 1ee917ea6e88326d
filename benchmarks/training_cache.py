"""Training cache memory: the compact cache against the layout it replaced, on real cases.

Training caches each preprocessed volume once (``cached_transforms``). The compact cache holds the image
once, with the edge slices that neighbour stacking repeats, the label as bytes and the voxel indices of
foreground-balanced cropping as 32-bit integers; the baseline is the layout cached before, built in the
same run from the same files by the package's chain without its compact storage: every slice stacked with its
neighbours (``2 * context + 1`` float32 channels), a float32 label and 64-bit indices. Three figures per layout:

* cached bytes per case (the tensors the cache holds), and their ratio to the baseline's;
* peak RSS of a fresh process that caches the cases in that layout (what decides whether two training
  runs fit side by side; about 0.5 GB of it is imported libraries, and reading and resampling a volume
  add their own transient peak);
* milliseconds per volume of the random slice chain drawn from that layout (same seed), which must not
  become slower, timed in one process that alternates the layouts volume by volume (load from other work
  falls on both alike); the drawn images and loss targets (label above 0.5) are checked to be the same
  (a digest).

    python -m benchmarks.training_cache [--quick] [--patch 160] [--planes axial coronal] [--cases 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import DATASETS, machine, peak_rss_mb, print_table, run_worker, serve_as_worker, write_results

LAYOUTS = ("compact (today)", "stacked (before)")


def _cases(spec: dict[str, Any]) -> list[tuple[Any, str, str]]:
    """(dataset's orientation, image, label) of the first ``spec['cases']`` cases of each real dataset present."""
    from atriumseg.pipeline.training.dataset import load_msd_dataset

    found = []
    for folder, _ in DATASETS.values():
        if (folder / "dataset.json").is_file():
            dataset = load_msd_dataset(folder)
            found += [(dataset.orientation, str(c.image), str(c.label)) for c in dataset.cases[: spec["cases"]]]
    return found


def _stacked_chain(design: Any, orientation: str | None, patch: int) -> Any:
    """The layout training cached before: ``cached_transforms`` without its compact storage (the edge slices, the
    byte label, the 32-bit indices), every slice then stacked with its neighbours (after the in-plane padding and the
    indexing, with which stacking commutes), the label as read (float32), 64-bit indices."""
    from monai.transforms import BorderPadd, Compose

    from atriumseg.transforms.augmentation import cached_transforms
    from atriumseg.transforms.context import StackNeighboursd
    from atriumseg.transforms.preprocessing import IMAGE

    chain = cached_transforms(design, orientation, patch).transforms
    if not isinstance(chain[-3], BorderPadd):
        raise RuntimeError("cached_transforms no longer ends with its three compact-storage steps: update the baseline")
    pre = design.preprocessing
    return Compose([*chain[:-3], StackNeighboursd(keys=IMAGE, slice_dim=pre.slice_dim, context=pre.context)])


def _bytes(volume: dict[str, Any]) -> int:
    return sum(t.element_size() * t.numel() for t in volume.values() if torch.is_tensor(t))


def _design_and_volumes(spec: dict[str, Any], layout: str) -> tuple[Any, list[dict[str, Any]]]:
    """The training design of ``spec``'s plane, and its cases cached in ``layout``."""
    from atriumseg.pipeline.training.config import TrainConfig
    from atriumseg.transforms.augmentation import cached_transforms
    from atriumseg.transforms.preprocessing import IMAGE, LABEL

    design = TrainConfig(datasets=(DATASETS["LeftAtrium"][0],), output=Path("unused"), plane=spec["plane"],
                         context=spec["context"], patch=spec["patch"]).design
    cache = cached_transforms if layout == LAYOUTS[0] else _stacked_chain
    return design, [cache(design, orientation, spec["patch"])({IMAGE: image, LABEL: label})
                    for orientation, image, label in _cases(spec)]


def cache_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Cache the cases in ``spec['layout']`` for one plane (a fresh process: its peak RSS is the layout's)."""
    _, volumes = _design_and_volumes(spec, spec["layout"])
    return {"bytes": [_bytes(v) for v in volumes], "peak_rss_mb": peak_rss_mb()}


def chain_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Time the random slice chain on the cases in both layouts, alternately (other load on the machine falls on
    both alike), each chain with its own seed 0; milliseconds per volume and a digest of what each drew."""
    from atriumseg.transforms.augmentation import training_transforms
    from atriumseg.transforms.preprocessing import IMAGE, LABEL

    chains, seconds, digests = {}, dict.fromkeys(LAYOUTS, 0.0), dict.fromkeys(LAYOUTS, 0.0)
    for layout in LAYOUTS:
        design, volumes = _design_and_volumes(spec, layout)
        chain = training_transforms(design, spec["patch"], slices_per_volume=4)
        if layout != LAYOUTS[0]:
            chain.transforms = chain.transforms[1:]  # the stacked layout needs no neighbour view
        chains[layout] = (chain.set_random_state(0), volumes)
    for _ in range(spec["repeats"]):
        for index in range(len(chains[LAYOUTS[0]][1])):
            for layout, (chain, volumes) in chains.items():
                started = time.perf_counter()
                slices = chain(dict(volumes[index]))
                seconds[layout] += time.perf_counter() - started
                digests[layout] += sum(float(s[IMAGE].double().sum() + (s[LABEL] > 0.5).sum()) for s in slices)
    count = spec["repeats"] * len(chains[LAYOUTS[0]][1])
    return {"ms_per_volume": {k: 1000 * v / count for k, v in seconds.items()}, "digest": digests}


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One measurement in a fresh process: a layout's cache (``spec["kind"] == "cache"``) or both chains."""
    return cache_worker(spec) if spec["kind"] == "cache" else chain_worker(spec)


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line; ``--worker`` is how the benchmark calls itself in a fresh process."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training_cache", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one case per dataset, axial, patch 64, one repeat")
    parser.add_argument("--patch", type=int, default=160, help="training patch side (the cache is padded to it)")
    parser.add_argument("--planes", nargs="+", default=["axial", "coronal"], help="member planes to cache for")
    parser.add_argument("--context", type=int, default=2, help="neighbour slices each side (the built-in model's: 2)")
    parser.add_argument("--cases", type=int, default=3, help="cases of each real dataset")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Measure each plane: each layout's cache in a fresh process, then both chains in one, and print the table."""
    args = parse(argv)
    if serve_as_worker(args.worker, worker):
        return
    if args.quick:
        args.patch, args.planes, args.cases = 64, ["axial"], 1
    if not _cases({"cases": 1}):
        raise SystemExit("no real dataset found (../shared/data): this benchmark caches real cases")
    rows, results = [], []
    for plane in args.planes:
        spec = {"plane": plane, "patch": args.patch, "context": args.context, "cases": args.cases}
        cached = {layout: run_worker("benchmarks.training_cache", {**spec, "kind": "cache", "layout": layout})
                  for layout in LAYOUTS}
        timed = run_worker("benchmarks.training_cache", {**spec, "kind": "chain", "repeats": 1 if args.quick else 10})
        base, base_ms = cached[LAYOUTS[1]], timed["ms_per_volume"][LAYOUTS[1]]
        same = len(set(timed["digest"].values())) == 1
        for layout, r in cached.items():
            total, ms = sum(r["bytes"]), timed["ms_per_volume"][layout]
            rows.append([plane, layout, f"{total / len(r['bytes']) / 2**20:.0f}", f"{max(r['bytes']) / 2**20:.0f}",
                         f"{sum(base['bytes']) / total:.2f}x", f"{r['peak_rss_mb']:.0f}",
                         f"{base['peak_rss_mb'] / r['peak_rss_mb']:.2f}x", f"{ms:.1f}", f"{base_ms / ms:.2f}x",
                         "yes" if same else "NO"])
            results.append({"plane": plane, "layout": layout, **r, "ms_per_volume": ms,
                            "digest": timed["digest"][layout]})
    info = machine(torch.device("cpu"))
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['torch_threads']} torch threads")
    print_table(f"Training cache, {args.cases} case(s) of each dataset, patch {args.patch}, context {args.context} "
                "(ratios: the baseline's figure over each layout's)",
                ["plane", "layout", "MiB per case", "largest MiB", "less memory", "peak RSS MiB", "less RSS",
                 "chain ms/volume", "chain speed", "same slices"], rows)
    write_results("training_cache", {"quick": args.quick, "machine": info, "patch": args.patch, "context": args.context,
                    "cases": args.cases, "results": results})


if __name__ == "__main__":
    main()
