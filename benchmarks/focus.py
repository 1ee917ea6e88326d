"""Focused inference against whole-slice inference on real cases: the work saved and the mask it changes.

Every image of each dataset (by default the 15 MSD bSSFP cases; ``--datasets`` adds the 80 LGE ones) is
segmented twice by the same model in one process, through the public ``Segmenter``: with focus (the
default: a locating pass on one whole slice every 20 mm, then only the atrium's in-plane box on the slab
that holds it) and with ``focus=False`` (every whole slice). Reported per case: the network's input pixels
with focus as a share of the whole-slice pass's (every member of an ensemble counted), the voxels where
the two masks differ and their Dice, and the seconds of each (segmenting only: the image is read once;
both paths are warmed up on the first case). The summary gives the range, the mean of the cases' shares
and the pooled share (all focused pixels over all whole-slice pixels). ``--context-divisors N`` widens (or
narrows) the focused box's context band for the network's field of view.

    python -m benchmarks.focus [--model PATH] [--datasets LeftAtrium LA2018_LGE] [--limit N] [--context-divisors N]
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from benchmarks.common import DATASETS, dice, print_table, setup_logging, write_results
from benchmarks.timing import NetworkClock

if TYPE_CHECKING:
    from atriumseg.pipeline.inference.focus import FocusSettings
    from atriumseg.pipeline.inference.segmenter import Segmenter

log = logging.getLogger("benchmarks.focus")


def _segment(segmenter: Segmenter, clocks: list[NetworkClock], image: torch.Tensor,
             orientation: str | None) -> dict[str, Any]:
    """One segmentation: its mask, seconds and network pixels (all members)."""
    for clock in clocks:
        clock.reset()
    started = time.perf_counter()
    mask = segmenter(image, assume_orientation=orientation)[0].numpy()
    return {"mask": mask, "seconds": time.perf_counter() - started, "pixels": sum(c.pixels for c in clocks)}


def compare(model: Path | None, images: list[Path], orientation: str | None,
            settings: FocusSettings) -> list[dict[str, Any]]:
    """Per case: network pixels, differing voxels, mask Dice and seconds, focused (``settings``) vs whole-slice."""
    from atriumseg.pipeline.inference.segmenter import Segmenter
    from atriumseg.pipeline.io.volumes import read_image

    paths = []
    for name, focus in (("focus", settings), ("whole", False)):
        segmenter = Segmenter.from_path(model, device="cpu", focus=focus)
        paths.append((name, segmenter, [NetworkClock(m.network, torch.device("cpu")) for m in segmenter.members]))
    first = read_image(images[0]).tensor
    for _, segmenter, _ in paths:
        segmenter(first, assume_orientation=orientation)  # warm-up: the first call's set-up is not timed
    rows = []
    for path in images:
        image = read_image(path).tensor
        runs = {name: _segment(segmenter, clocks, image, orientation) for name, segmenter, clocks in paths}
        a, b = runs["focus"]["mask"], runs["whole"]["mask"]
        rows.append({"case": path.name.removesuffix(".nii.gz"), "focus_pixels": runs["focus"]["pixels"],
                     "whole_pixels": runs["whole"]["pixels"], "differing_voxels": int(np.count_nonzero(a != b)),
                     "dice": dice(a, b), "focus_s": runs["focus"]["seconds"], "whole_s": runs["whole"]["seconds"]})
        log.info("%s: %s", path.name, {k: v for k, v in rows[-1].items() if k != "case"})
    return rows


def _summary(name: str, rows: list[dict[str, Any]]) -> list[str]:
    """The table's line for a whole dataset."""
    shares = [r["focus_pixels"] / r["whole_pixels"] for r in rows]
    pooled = sum(r["focus_pixels"] for r in rows) / sum(r["whole_pixels"] for r in rows)
    same = sum(r["differing_voxels"] == 0 for r in rows)
    focus_s, whole_s = sum(r["focus_s"] for r in rows), sum(r["whole_s"] for r in rows)
    return [name, f"all {len(rows)}", f"{100 * min(shares):.0f}-{100 * max(shares):.0f}%, mean "
            f"{100 * np.mean(shares):.1f}%, pooled {100 * pooled:.1f}%", f"{same} of {len(rows)} equal",
            f"min {min(r['dice'] for r in rows):.5f}", f"{focus_s:.1f}", f"{whole_s:.1f}", f"{whole_s / focus_s:.2f}x"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="model or ensemble folder (default: built-in)")
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=["LeftAtrium"],
                        help="datasets whose imagesTr/ to segment (default: the 15 MSD bSSFP cases)")
    parser.add_argument("--limit", type=int, default=0, help="at most N cases per dataset (0: all)")
    parser.add_argument("--context-divisors", type=int, default=None,
                        help="the focused box's context band in pooling divisors (default: FocusSettings')")
    args = parser.parse_args(argv)
    setup_logging()
    from atriumseg.pipeline.inference.focus import FocusSettings

    divisors = {} if args.context_divisors is None else {"context_divisors": args.context_divisors}
    settings = FocusSettings(**divisors)
    results: dict[str, list[dict[str, Any]]] = {}
    table = []
    for name in args.datasets:
        root, orientation = DATASETS[name]
        images = sorted((root / "imagesTr").glob("*.nii.gz"))[: args.limit or None]
        if not images:
            raise SystemExit(f"no images in {root / 'imagesTr'}")
        results[name] = rows = compare(args.model, images, orientation, settings)
        table += [[name, r["case"], f"{100 * r['focus_pixels'] / r['whole_pixels']:.0f}%", str(r["differing_voxels"]),
                   f"{r['dice']:.5f}", f"{r['focus_s']:.2f}", f"{r['whole_s']:.2f}",
                   f"{r['whole_s'] / r['focus_s']:.2f}x"] for r in rows]
        table.append(_summary(name, rows))
    print_table(f"focused ({settings}) vs whole-slice inference ({args.model or 'built-in model'}; seconds: "
                "segmenting only)", ["dataset", "case", "network pixels", "differing voxels", "mask Dice", "focus s",
                                     "whole s", "speed-up"], table)
    log.info("wrote %s", write_results("focus", {"model": str(args.model or "built-in"),
                                                 "focus": vars(settings), "datasets": results}))


if __name__ == "__main__":
    main()
