"""The MONAI chain that puts a volume in the model's frame.

One chain serves inference (key ``image``) and training (``image`` and ``label``): orientation
to the card's anatomical frame, resampling, per-volume robust intensity scaling (capped first at the
upper percentile of the volume's centre when the card asks), zero padding
of slices smaller than the card's ``min_slice_size`` (a tight crop then sits in the same zero
surround that training's crops gave it) and padding to the network's divisor. Its spatial steps
are invertible (``Compose.inverse``); at inference, predictions return to the input's grid
through the affines alone (``atriumseg.pipeline.inference.restore``), which tests check against
that inverse.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from monai.transforms import (
    Compose,
    DivisiblePadd,
    EnsureTyped,
    Orientationd,
    ScaleIntensityRangePercentilesd,
    Spacingd,
    SpatialPadd,
)

from atriumseg.models.card import ModelCard
from atriumseg.transforms.intensity import ClipToCentred

IMAGE, LABEL = "image", "label"


def frame_transforms(card: ModelCard, label_key: str | None = None) -> list:
    """The steps that put a volume in the card's frame (orientation, spacing, intensity window), before padding.

    Cards with the same :func:`frame_key` give the same result, so an ensemble runs them once.
    """
    pre = card.preprocessing
    keys: Sequence[str] = (IMAGE,) if label_key is None else (IMAGE, label_key)
    modes = ("bilinear",) if label_key is None else ("bilinear", "nearest")
    clip = [ClipToCentred(keys=IMAGE, lower=pre.percentiles[0], upper=pre.percentiles[1], fraction=pre.centre_clip)
            ] if pre.centre_clip else []
    return [
        EnsureTyped(keys=keys, dtype="float32", track_meta=True),
        Orientationd(keys=keys, axcodes=pre.orientation, labels=(("L", "R"), ("P", "A"), ("I", "S"))),
        Spacingd(keys=keys, pixdim=pre.pixdim, mode=modes, padding_mode="border", dtype=np.float32),
        *clip,
        ScaleIntensityRangePercentilesd(
            keys=IMAGE, lower=pre.percentiles[0], upper=pre.percentiles[1], b_min=0.0, b_max=1.0, clip=True
        ),
    ]


def padding_transforms(card: ModelCard, label_key: str | None = None) -> list:
    """Zero padding of slices below ``min_slice_size``, then to the network's divisor (both depend on the plane)."""
    pre = card.preprocessing
    keys: Sequence[str] = (IMAGE,) if label_key is None else (IMAGE, label_key)
    divisor = [card.architecture.divisor] * 3
    divisor[pre.slice_dim] = 1
    smallest = [pre.min_slice_size] * 3
    smallest[pre.slice_dim] = -1
    return [
        SpatialPadd(keys=keys, spatial_size=smallest, mode="constant"),
        DivisiblePadd(keys=keys, k=divisor, mode="constant"),
    ]


def frame_key(card: ModelCard) -> tuple:
    """What :func:`frame_transforms` depends on: equal keys, equal framed volumes."""
    pre = card.preprocessing
    return pre.orientation, pre.pixdim, tuple(pre.percentiles), pre.centre_clip


def inference_transforms(card: ModelCard, label_key: str | None = None) -> Compose:
    """Preprocessing of a channel-first MetaTensor under ``image`` (and ``label``, nearest-neighbour)."""
    return Compose([*frame_transforms(card, label_key), *padding_transforms(card, label_key)])
