"""Out-of-fold figures of one design on thicker slices than the data have: how a scan acquired coarser fares.

Every training scan has thin slices (LGE 1.25 mm, bSSFP 1.37 mm); scans from other hands may not. Each held-out
case's image is thickened along its acquisition axis (the voxel axis of the largest spacing) by averaging every
``FACTOR`` consecutive slices, as a thicker acquisition of the same anatomy would record it (its partial volume), and
the fold model that did not train on the case segments it as users run it. Beside it, the control: the thin scan's
probabilities averaged over the same runs of slices, thresholded and cleaned as the card does, which is what the
thin scan's result gives on the thick grid. Both thick masks are spread over the thin slices each voxel covers and
compared with the thin label there (a trailing remainder of slices left out), so both pay the coarser grid alike,
no rule has to say whether a thick voxel half in the atrium is in, and the volumes are exact; the difference
between the two is what the thicker scan costs the model. ``--factor 1`` reproduces ``tools/cross_validate.py``'s
figures.

    python tools/thick_slices.py runs/cv_wdark_fold0 runs/cv_wdark_fold1 runs/cv_wdark_fold2 runs/cv_wdark_fold3 \
        runs/cv_wdark_fold4 --factor 2 -o cv/thick2_wdark

The CSVs (``OUTPUT/DATASET.csv``, or ``.partial.csv``; the control's in ``OUTPUT/control/``) are read by
``tools/pilot_table.py``; they are figures of thickened scans, never a card's.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from tqdm.auto import tqdm

from atriumseg.pipeline.analysis.metrics import CaseMetrics, case_metrics, summarise
from atriumseg.pipeline.evaluation.evaluate import read_labelled
from atriumseg.pipeline.evaluation.table import summary_line, write_metrics_csv
from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.pipeline.io.volumes import read_image
from atriumseg.pipeline.training.validation import fold_segmenters, held_out

Scored = dict[str, list[tuple[str, CaseMetrics]]]  # per dataset: (case, metrics)


def thicken(data: np.ndarray, affine: np.ndarray, factor: int, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """The mean of every ``factor`` consecutive slices of a 3D array along voxel ``axis`` (a trailing remainder
    dropped), and the affine that puts each thick voxel at the centre of the thin ones it averages."""
    count = data.shape[axis] // factor
    kept = np.take(np.asarray(data, dtype=np.float32), np.arange(count * factor), axis=axis)
    shape = list(kept.shape)
    shape[axis: axis + 1] = [count, factor]
    step = np.eye(4)
    step[axis, axis] = factor
    step[axis, 3] = (factor - 1) / 2
    return kept.reshape(shape).mean(axis=axis + 1), affine @ step


def acquisition_axis(affine: np.ndarray) -> int:
    """The voxel axis of the largest spacing (the last of equals): the one a thicker acquisition coarsens."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    return int(np.argmax(spacing + np.arange(3) * 1e-6))


def score_thick(segmenter: Segmenter, image_path: Path, label_path: Path, orientation: str | None, factor: int,
                folder: Path) -> tuple[CaseMetrics, CaseMetrics]:
    """One case's metrics with its slices thickened by ``factor``: of the thick scan segmented as users run it, and of
    the control, the thin scan's probabilities averaged over the same runs of slices and thresholded and cleaned as
    the card does (what the thin scan's result gives on the thick grid). Each thick mask is spread over the thin
    slices it covers and compared with the thin label there, so both pay the coarser grid alike and the volumes are
    exact."""
    image, label = read_labelled(image_path, label_path)
    affine = image.tensor.affine.numpy()
    axis = acquisition_axis(affine)
    thin_prob = segmenter.probabilities(image.tensor, assume_orientation=orientation)
    thick_prob = thicken(thin_prob[0].numpy(), affine, factor, axis)[0]
    control = segmenter.clean(segmenter.threshold(MetaTensor(torch.from_numpy(thick_prob)[None])))[0].numpy()
    thick_image, thick_affine = thicken(image.tensor[0].numpy(), affine, factor, axis)
    path = folder / image_path.name
    nib.save(nib.Nifti1Image(thick_image, thick_affine), path)
    thick_mask = segmenter(read_image(path).tensor, assume_orientation=orientation)[0].numpy()
    truth = np.take(label.tensor[0].numpy() > 0.5, np.arange(thick_prob.shape[axis] * factor), axis=axis)
    scan = case_metrics(np.repeat(thick_mask, factor, axis=axis), truth, affine)
    return scan, case_metrics(np.repeat(control, factor, axis=axis), truth, affine)


def score(
    fold_models: list[Path], factor: int, device: str = "auto", partial: bool = False
) -> tuple[Scored, Scored, bool]:
    """Per dataset, every held-out case's metrics on slices thickened by ``factor`` (the thick scan's, then the
    control's), and whether the K folds are all in (:func:`fold_segmenters` refuses what is not one design)."""
    if factor < 1:
        raise ValueError(f"the factor must be 1 or more, got {factor}")
    segmenters, folds, k = fold_segmenters(fold_models, device, partial)
    rows: Scored = {}
    controls: Scored = {}
    with tempfile.TemporaryDirectory(prefix="atriumseg-thick-") as tmp:
        for segmenter, card in segmenters:
            for dataset, cases in held_out(card):
                for case in tqdm(cases, desc=f"{dataset.name}, fold {card.provenance['config']['fold']}"):
                    scan, control = score_thick(segmenter, case.image, case.label, dataset.orientation, factor,
                                                Path(tmp))
                    rows.setdefault(dataset.name, []).append((case.name, scan))
                    controls.setdefault(dataset.name, []).append((case.name, control))
    return rows, controls, folds == list(range(k))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+", help="the K fold models (ensembles) of one design")
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder for one CSV per dataset")
    parser.add_argument("--factor", type=int, default=2, help="slices averaged into one (default 2)")
    parser.add_argument("--partial", action="store_true", help="some of the K folds: progress, not CV figures")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        rows, controls, whole = score(args.models, args.factor, args.device, args.partial)
    except ValueError as err:
        sys.exit(f"thick_slices: {err}")
    suffix = "" if whole else ".partial"
    for folder, kind, table in ((args.output, "thick scan", rows),
                                (args.output / "control", "thin scan's map thickened", controls)):
        folder.mkdir(parents=True, exist_ok=True)
        for name, scored in table.items():
            write_metrics_csv(sorted(scored), folder / f"{name}{suffix}.csv")
            print(f"{name}, slices x{args.factor}, {kind}: {summary_line(summarise(scored))}")


if __name__ == "__main__":
    main()
