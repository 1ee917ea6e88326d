"""Dice and seconds per volume of several models on each protocol's validation cases, as users run them.

Each model segments the same validation cases of every dataset (those listed on the card of
``--split MODEL``, by default the last model given) through the public ``Segmenter`` (focused inference, default batch size), after one warm-up volume; seconds count
reading the image, segmenting and restoring the mask to the input grid (no file is written). The
first model is the baseline of the ratios. LGE volumes can also be given a second time with their
slices interpolated to the released 0.625 mm (``--lge-fine FOLDER``, made by
``tools/upsample_slices.py``), to show whether a model depends on the 1.25 mm slices it saw.

    python -m benchmarks.protocols --models BASELINE MODEL... [--lge-fine /tmp/lge_0625] [--split MODEL]
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import ROOT, print_table, setup_logging, write_results

log = logging.getLogger("benchmarks.protocols")
DATASETS = {
    "LeftAtrium": (ROOT.parent / "shared" / "data" / "Task02_Heart_cropped", "ASL"),
    "LA2018_LGE": (ROOT.parent / "shared" / "data" / "LA2018_LGE", None),
}


def _cases(card: Any, dataset: str, fine: Path | None) -> list[tuple[Path, Path]]:
    root, _ = DATASETS[dataset]
    names = card.provenance.get("split", {}).get(dataset, {}).get("validation", [])
    base = fine if fine is not None else root
    return [(base / "imagesTr" / f"{n}.nii.gz", base / "labelsTr" / f"{n}.nii.gz") for n in names]


def _run(model: Path, cases: list[tuple[Path, Path]], orientation: str | None) -> dict[str, float]:
    from atriumseg.pipeline.analysis.metrics import case_metrics
    from atriumseg.pipeline.inference.segmenter import Segmenter
    from atriumseg.pipeline.io.volumes import read_image

    segmenter = Segmenter.from_path(model, device="cpu")
    segmenter(read_image(cases[0][0]).tensor, assume_orientation=orientation)  # warm-up
    seconds, dice = [], []
    for image_path, label_path in cases:
        started = time.perf_counter()
        image = read_image(image_path)
        mask = segmenter(image.tensor, assume_orientation=orientation)[0].numpy()
        seconds.append(time.perf_counter() - started)
        label = read_image(label_path).tensor[0].numpy() > 0.5
        dice.append(case_metrics(mask, label, image.tensor.affine.numpy()).dice)
    return {"cases": len(cases), "dice_mean": float(np.mean(dice)), "seconds_per_volume": float(np.mean(seconds))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", type=Path, required=True, help="model folders; the first is the baseline")
    parser.add_argument("--lge-fine", type=Path, default=None, help="LGE validation cases with 0.625 mm slices")
    parser.add_argument("--split", type=Path, default=None, help="model whose card lists the validation cases")
    args = parser.parse_args(argv)
    setup_logging()
    from atriumseg.models.checkpoint import load_card

    card = load_card(args.split or args.models[-1])
    results: dict[str, dict[str, Any]] = {}
    for model in args.models:
        runs = {}
        for dataset, (_, orientation) in DATASETS.items():
            cases = _cases(card, dataset, None)
            if cases:
                runs[dataset] = _run(model, cases, orientation)
        if args.lge_fine is not None and _cases(card, "LA2018_LGE", None):
            runs["LA2018_LGE at 0.625 mm"] = _run(model, _cases(card, "LA2018_LGE", args.lge_fine), None)
        results[str(model)] = runs
        log.info("%s: %s", model, runs)
    base = results[str(args.models[0])]
    rows = []
    for model, runs in results.items():
        for protocol, r in runs.items():
            ratio = r["seconds_per_volume"] / base[protocol]["seconds_per_volume"] if protocol in base else float("nan")
            rows.append([model, protocol, str(r["cases"]), f"{r['dice_mean']:.4f}", f"{r['seconds_per_volume']:.2f}",
                         f"{ratio:.2f}x"])
    print_table("validation cases per protocol (seconds: read + segment + restore, after a warm-up)",
                ["model", "protocol", "cases", "Dice", "s/volume", "vs first"], rows)
    log.info("wrote %s", write_results("protocols", {"models": results}))


if __name__ == "__main__":
    main()
