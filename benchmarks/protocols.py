"""Dice and seconds per volume of several models on each protocol's validation cases, as users run them.

Each model (a model folder or an ensemble folder) segments the same validation cases of every dataset
(those listed on the card of ``--split MODEL``, by default the last model given; an ensemble's own card,
else its first member's) through the public ``Segmenter`` (focused inference, default batch size), after
one warm-up volume; Dice (mean and worst) and the mean absolute volume error are reported; seconds count
reading the image, segmenting and restoring the mask to the input grid (no file is written). The
first model is the baseline of the ratios. LGE volumes can also be given a second time with their
slices interpolated to the released 0.625 mm (``--lge-fine FOLDER``, made by
``tools/upsample_slices.py``), to show whether a model depends on the 1.25 mm slices it saw.
``--min-slice-size N`` runs every model after the first (single models, not ensembles) with its card's
``min_slice_size`` set to N, so that giving the same model twice shows in one table what padding small
slices as training saw them does (0: pad only to the network's divisor).

    python -m benchmarks.protocols --models BASELINE MODEL... [--lge-fine /tmp/lge_0625] [--split MODEL]
        [--min-slice-size N]
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks.common import DATASETS, print_table, setup_logging, write_results

if TYPE_CHECKING:
    from atriumseg.pipeline.inference.segmenter import Segmenter

log = logging.getLogger("benchmarks.protocols")


def _provenance(model: Path) -> dict[str, Any]:
    """The provenance that lists the validation cases: the model's card, or an ensemble's (else its first member's)."""
    from atriumseg.models.checkpoint import load_card
    from atriumseg.models.ensemble import is_ensemble, load_ensemble_card

    if not is_ensemble(model):
        return load_card(model).provenance
    ensemble = load_ensemble_card(model)
    return ensemble.provenance if "split" in ensemble.provenance else load_card(model / ensemble.members[0]).provenance


def _cases(provenance: dict[str, Any], dataset: str, fine: Path | None) -> list[tuple[Path, Path]]:
    root, _ = DATASETS[dataset]
    names = provenance.get("split", {}).get(dataset, {}).get("validation", [])
    base = fine if fine is not None else root
    return [(base / "imagesTr" / f"{n}.nii.gz", base / "labelsTr" / f"{n}.nii.gz") for n in names]


def _segmenter(model: Path, min_slice_size: int | None) -> Segmenter:
    """The model's ``Segmenter``, its card's ``min_slice_size`` replaced when one is given."""
    from dataclasses import replace

    from atriumseg.models.checkpoint import load_model
    from atriumseg.models.ensemble import is_ensemble
    from atriumseg.pipeline.inference.segmenter import Segmenter

    if min_slice_size is None:
        return Segmenter.from_path(model, device="cpu")
    if is_ensemble(model):
        raise SystemExit(f"--min-slice-size applies to single models; {model} is an ensemble")
    network, card = load_model(model)
    card = replace(card, preprocessing=replace(card.preprocessing, min_slice_size=min_slice_size))
    return Segmenter(network, card, device="cpu")


def _run(model: Path, cases: list[tuple[Path, Path]], orientation: str | None,
         min_slice_size: int | None = None) -> dict[str, float]:
    from atriumseg.pipeline.analysis.metrics import case_metrics
    from atriumseg.pipeline.io.volumes import read_image

    segmenter = _segmenter(model, min_slice_size)
    segmenter(read_image(cases[0][0]).tensor, assume_orientation=orientation)  # warm-up
    seconds, metrics = [], []
    for image_path, label_path in cases:
        started = time.perf_counter()
        image = read_image(image_path)
        mask = segmenter(image.tensor, assume_orientation=orientation)[0].numpy()
        seconds.append(time.perf_counter() - started)
        label = read_image(label_path).tensor[0].numpy() > 0.5
        metrics.append(case_metrics(mask, label, image.tensor.affine.numpy()))
    return {"cases": len(cases), "dice_mean": float(np.mean([m.dice for m in metrics])),
            "dice_worst": float(np.min([m.dice for m in metrics])),
            "abs_volume_error_mean_pct": float(np.nanmean([m.abs_volume_error_pct for m in metrics])),
            "seconds_per_volume": float(np.mean(seconds))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", type=Path, required=True,
                        help="model or ensemble folders; the first is the baseline")
    parser.add_argument("--lge-fine", type=Path, default=None, help="LGE validation cases with 0.625 mm slices")
    parser.add_argument("--split", type=Path, default=None, help="model whose card lists the validation cases")
    parser.add_argument("--min-slice-size", type=int, default=None,
                        help="run every model after the first (not ensembles) with this min_slice_size instead of "
                             "its card's")
    args = parser.parse_args(argv)
    setup_logging()
    provenance = _provenance(args.split or args.models[-1])
    results: dict[str, dict[str, Any]] = {}
    labels = [str(m) for m in args.models]
    if args.min_slice_size is not None:
        labels[1:] = [f"{m} (min_slice_size {args.min_slice_size})" for m in labels[1:]]
    for index, (model, label) in enumerate(zip(args.models, labels, strict=True)):
        size = args.min_slice_size if index else None
        runs = {}
        for dataset, (_, orientation) in DATASETS.items():
            cases = _cases(provenance, dataset, None)
            if cases:
                runs[dataset] = _run(model, cases, orientation, size)
        if args.lge_fine is not None and _cases(provenance, "LA2018_LGE", None):
            runs["LA2018_LGE at 0.625 mm"] = _run(model, _cases(provenance, "LA2018_LGE", args.lge_fine), None, size)
        results[label] = runs
        log.info("%s: %s", label, runs)
    base = results[labels[0]]
    rows = []
    for model, runs in results.items():
        for protocol, r in runs.items():
            ratio = r["seconds_per_volume"] / base[protocol]["seconds_per_volume"] if protocol in base else float("nan")
            rows.append([model, protocol, str(r["cases"]), f"{r['dice_mean']:.4f}", f"{r['dice_worst']:.4f}",
                         f"{r['abs_volume_error_mean_pct']:.1f}", f"{r['seconds_per_volume']:.2f}", f"{ratio:.2f}x"])
    print_table("validation cases per protocol (seconds: read + segment + restore, after a warm-up)",
                ["model", "protocol", "cases", "Dice", "worst", "|vol err| %", "s/volume", "vs first"], rows)
    log.info("wrote %s", write_results("protocols", {"models": results, "min_slice_size": args.min_slice_size}))


if __name__ == "__main__":
    main()
