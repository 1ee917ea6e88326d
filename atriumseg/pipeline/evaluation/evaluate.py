"""Evaluating a model as users meet it: segment each image and compare the mask with its label."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from atriumseg.pipeline.analysis.metrics import CaseMetrics, case_metrics
from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.pipeline.io.volumes import Volume, read_image

log = logging.getLogger(__name__)


def evaluate(
    segmenter: Segmenter,
    pairs: list[tuple[str, Path, Path]],
    assume_orientation: str | None = None,
    show_progress: bool = True,
    tta: bool = False,
    on_error: Callable[[str, Exception], None] | None = None,
) -> list[tuple[str, CaseMetrics]]:
    """Segment each image exactly as users do (``tta``: as ``segment --tta`` does) and compare with its label on
    the image's own grid.

    ``pairs`` are (name, image path, label path), as :func:`atriumseg.pipeline.evaluation.pairs.pair_cases`
    gives them; a label whose grid (shape or voxel-to-world affine) differs from its image's is refused. With
    ``on_error``, a case that fails (unreadable, refused, too small or too large...) is passed to it with its error
    and left out, and the others are scored; without it, the first failure stops the evaluation.
    """
    rows = []
    for name, image_path, label_path in tqdm(pairs, desc="evaluating", unit="case", disable=not show_progress):
        try:
            metrics = _score(segmenter, image_path, label_path, assume_orientation, tta)
        except Exception as err:
            if on_error is None:
                raise
            on_error(name, err)
            continue
        rows.append((name, metrics))
        log.info(
            "%s: Dice %.4f, HD95 %.2f mm, ASD %.2f mm, volume error %+.1f%%",
            name, metrics.dice, metrics.hd95_mm, metrics.asd_mm, metrics.volume_error_pct,
        )
    return rows


def read_labelled(image_path: Path, label_path: Path) -> tuple[Volume, Volume]:
    """An image and its label, once the label is known to lie on the image's grid (shape and voxel-to-world affine;
    a refusal names the label's file)."""
    image, label = read_image(image_path), read_image(label_path)
    if tuple(image.tensor.shape) != tuple(label.tensor.shape):
        shapes = tuple(image.tensor.shape[1:]), tuple(label.tensor.shape[1:])
        raise ValueError(f"{label_path}: image {shapes[0]} != label {shapes[1]}; labels must share their image's grid")
    if not np.allclose(image.tensor.affine.numpy(), label.tensor.affine.numpy(), atol=1e-3):
        raise ValueError(f"{label_path}: the label's affine differs from the image's (same shape, other position, "
                         "orientation or voxel size); labels must share their image's grid")
    return image, label


def _score(segmenter: Segmenter, image_path: Path, label_path: Path, assume_orientation: str | None,
           tta: bool) -> CaseMetrics:
    """One case's metrics (:func:`read_labelled`'s refusals name the label's file; a volume too large once resampled
    is refused naming the image's)."""
    image, label = read_labelled(image_path, label_path)
    mask = segmenter(image.tensor, assume_orientation=assume_orientation, tta=tta)[0].numpy()
    return case_metrics(mask, label.tensor[0].numpy() > 0.5, image.tensor.affine.numpy())
