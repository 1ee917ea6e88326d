"""The MONAI chain that turns cached 3D training volumes into augmented 2D slices.

The deterministic head (load, header fix, the same preprocessing as inference) is cached once,
compactly: the image once with edge slices for its neighbours, the label as bytes, the voxel indices
as 32-bit integers; the random tail stacks each slice's neighbours as channels (a view of the cache),
draws foreground-balanced slices and augments them in-plane. There are no flips: the left atrium has
a side, and a flipped heart is not a heart.

The augmentation is chosen so one network serves bSSFP and LGE-MRI: contrast, gamma, a
non-linear histogram shift, bias field, noise and blur (a coarser resolution) vary the
protocol's look; rotation and zoom vary the anatomy's size; and a random tight crop around the
drawn slice's centre (zero outside, as a cropped scan is padded) shows whole-chest scans as the
tight crops around the atrium that LGE data come in. On request, a share of slices has the atrium darkened
against its surround (:class:`RandDarkenAtriumd`), as in LGE scans whose blood pool stays dark inside bright walls.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import get_track_meta, set_track_meta
from monai.transforms import (
    BorderPadd,
    CastToTyped,
    Compose,
    EnsureChannelFirstd,
    FgBgToIndicesd,
    GaussianSmooth,
    Identityd,
    Lambdad,
    LoadImaged,
    MapTransform,
    OneOf,
    RandAdjustContrastd,
    RandAffined,
    RandBiasFieldd,
    RandCropByPosNegLabeld,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandHistogramShiftd,
    RandomizableTransform,
    RandScaleIntensityd,
    RandShiftIntensityd,
    RandSpatialCropd,
    SpatialPadd,
    SqueezeDimd,
)

from atriumseg.models.card import ModelCard
from atriumseg.transforms.context import NeighbourView
from atriumseg.transforms.intensity import finite_or_zero
from atriumseg.transforms.orientation import AssumeOrientationd
from atriumseg.transforms.preprocessing import IMAGE, LABEL, inference_transforms

FG, BG = "_fg_indices", "_bg_indices"  # cached voxel indices for fast foreground-balanced cropping
CROP_MARGIN = 1.2  # slices are cut this much larger than the patch so rotation leaves no empty corners
TIGHT_CROP_PROB = 0.25  # share of slices shown as a tight crop
TIGHT_CROP_MIN = 0.45  # smallest tight crop, as a fraction of the patch side
GAMMA = (0.6, 1.6)  # default range of the random gamma; below 1 brightens the mid-tones (a dark blood pool)
DARKEN = (0.4, 0.85)  # range of the factor a darkened atrium's grey levels are multiplied by
DARKEN_EDGE = 1.5  # Gaussian sigma (pixels) of the darkening's edge, so no sharp step marks the label's outline
ZOOM = 0.2  # default zoom range: each in-plane axis of a slice scaled by a factor drawn from 1 - ZOOM to 1 + ZOOM


def crop_side(patch: int) -> int:
    """The in-plane side of the slice cut from a volume for a ``patch``: ``CROP_MARGIN`` times larger."""
    return int(patch * CROP_MARGIN)


def padded_crop_side(patch: int, divisor: int) -> int:
    """:func:`crop_side` rounded up to the network's pooling grid: the card's ``min_slice_size``, so slices
    smaller than a training crop are zero-padded at inference as they were in training."""
    return -(-crop_side(patch) // divisor) * divisor


def _crop_size(card: ModelCard, patch: int) -> list[int]:
    """The slice cut from a volume: :func:`crop_side` in-plane, one voxel thick."""
    crop = [crop_side(patch)] * 3
    crop[card.preprocessing.slice_dim] = 1
    return crop


def labelled_reading(assume_orientation: str | None) -> list:
    """The steps that read an image and its label as training reads them: channel first, NaN and infinite voxels as
    0 (as inference reads them), the header fixed to ``assume_orientation`` when one is declared."""
    steps = [LoadImaged(keys=(IMAGE, LABEL), image_only=True), EnsureChannelFirstd(keys=(IMAGE, LABEL)),
             Lambdad(keys=IMAGE, func=finite_or_zero)]
    if assume_orientation:
        steps.append(AssumeOrientationd(keys=(IMAGE, LABEL), axcodes=assume_orientation))
    return steps


def cached_transforms(card: ModelCard, assume_orientation: str | None, patch: int) -> Compose:
    """Deterministic part: read (NaN and infinite voxels as 0, as inference reads them), fix the header if
    declared, preprocess, pad in-plane to the crop size, index the foreground, add the edge slices that
    neighbour stacking repeats (image only), and store compactly.

    The padding comes before the indexing so that the cached voxel indices point into the array the
    crops are cut from (volumes smaller in-plane than a crop, such as tight LGE crops, are padded).
    Compact storage changes no drawn slice and no loss target: the label is kept as the loss reads it
    (:func:`binary_label`), the indices in 32 bits where they fit (:func:`compact_indices`), and the tail's
    :class:`~atriumseg.transforms.context.NeighbourView` gives the channels that stacking here gave.
    """
    pre = card.preprocessing
    pad = _crop_size(card, patch)
    pad[pre.slice_dim] = -1
    edges = [0] * 6
    edges[2 * pre.slice_dim] = edges[2 * pre.slice_dim + 1] = pre.context
    return Compose(
        labelled_reading(assume_orientation)
        + list(inference_transforms(card, label_key=LABEL).transforms)
        + [
            SpatialPadd(keys=(IMAGE, LABEL), spatial_size=pad, mode="constant"),
            FgBgToIndicesd(keys=LABEL, fg_postfix=FG, bg_postfix=BG),
            BorderPadd(keys=IMAGE, spatial_border=edges, mode="edge"),
            Lambdad(keys=LABEL, func=binary_label),
            Lambdad(keys=(LABEL + FG, LABEL + BG), func=compact_indices),
        ]
    )


def binary_label(label: torch.Tensor) -> torch.Tensor:
    """The label as the training loss reads it, foreground above 0.5, in bytes: a quarter of float32's memory."""
    return (label > 0.5).to(torch.uint8)


def compact_indices(indices: torch.Tensor) -> torch.Tensor:
    """Voxel indices in 32 bits, half of int64's memory, unless one is too large for them (a volume of 2**31 voxels or
    more, a 1.6 m cube at 1.25 mm): the same crops are drawn from either."""
    if indices.numel() and int(indices.max()) >= 2**31:
        return indices
    return indices.to(torch.int32)


class WithoutMetadata(Compose):
    """A chain run with MONAI's metadata tracking off, giving plain tensors: training slices need no affine
    or transform history, and tracking them cost more than the augmentation itself (2.4x on the tests'
    tiny slices). The switch is MONAI's own; it is restored when the chain returns."""

    def __call__(self, input_: Any, *args: Any, **kwargs: Any) -> Any:
        tracking = get_track_meta()
        set_track_meta(False)
        try:
            return super().__call__(input_, *args, **kwargs)
        finally:
            set_track_meta(tracking)


class RandDarkenAtriumd(RandomizableTransform, MapTransform):
    """With probability ``prob``, multiply a slice's grey levels inside its atrium label (every channel) by a factor
    drawn from :data:`DARKEN`, fading to 1 over a Gaussian edge (:data:`DARKEN_EDGE`) around the label.

    LGE scans mostly show the atrium's blood pool a little brighter than its rim (median atrium-over-rim ratio 1.08
    over the 80 challenge cases, ``tools/atrium_level.py``); 14 show it darker (0.65 at the lowest). The factor's
    range takes the typical ratio across the dark ones. A slice without atrium is drawn for but left as it is, so
    the share of slices changed is ``prob`` times the share that hold atrium. The Gaussian edge also dims the wall
    just outside the label a little, and a small cross-section of atrium less than the drawn factor. The factor is
    drawn from this transform's random state, so a run's seed reaches it.
    """

    def __init__(self, keys: KeysCollection, label_key: Hashable, prob: float) -> None:
        RandomizableTransform.__init__(self, prob)
        MapTransform.__init__(self, keys)
        self.label_key = label_key
        self.edge = GaussianSmooth(DARKEN_EDGE)
        self.factor = 1.0

    def randomize(self, data: object = None) -> None:
        super().randomize(None)
        self.factor = float(self.R.uniform(*DARKEN))

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        self.randomize()
        if not self._do_transform:
            return d
        weight = self.edge(d[self.label_key].float()).clamp(0.0, 1.0)
        for key in self.key_iterator(d):
            d[key] = d[key] * (1.0 - (1.0 - self.factor) * weight).to(d[key].dtype)
        return d


def training_transforms(
    card: ModelCard, patch: int, slices_per_volume: int, gamma: tuple[float, float] = GAMMA, darken: float = 0.0,
    zoom: float = ZOOM,
) -> Compose:
    """Random part: ``slices_per_volume`` foreground-balanced slices per volume, augmented to ``patch`` x ``patch``,
    as plain tensors (:class:`WithoutMetadata`); ``gamma`` is the range of the random contrast curve, ``darken`` the
    share of slices whose atrium is darkened (:class:`RandDarkenAtriumd`; 0 leaves it out of the chain, so the other
    steps draw what they drew before it existed), ``zoom`` the range of the random scaling of each in-plane axis
    (a factor from 1 - ``zoom`` to 1 + ``zoom``; anatomy larger and smaller than the training cases').

    Takes what :func:`cached_transforms` made for the same ``patch``.
    """
    dim = card.preprocessing.slice_dim
    crop = _crop_size(card, patch)
    keys = (IMAGE, LABEL)
    return WithoutMetadata(
        [
            Lambdad(keys=IMAGE, func=NeighbourView(dim, card.preprocessing.context)),
            RandCropByPosNegLabeld(
                keys=keys,
                label_key=LABEL,
                spatial_size=crop,
                pos=2,
                neg=1,
                num_samples=slices_per_volume,
                fg_indices_key=LABEL + FG,
                bg_indices_key=LABEL + BG,
            ),
            SqueezeDimd(keys=keys, dim=dim + 1),
            CastToTyped(keys=LABEL, dtype=torch.float32),
            RandAffined(
                keys=keys,
                prob=0.8,
                rotate_range=(0.26,),
                scale_range=(zoom, zoom),
                spatial_size=(patch, patch),
                mode=("bilinear", "nearest"),
                padding_mode="zeros",
            ),
            _tight_crop(keys, patch),
            *([RandDarkenAtriumd(keys=IMAGE, label_key=LABEL, prob=darken)] if darken else []),
            RandGaussianSmoothd(keys=IMAGE, prob=0.25, sigma_x=(0.3, 1.5), sigma_y=(0.3, 1.5)),
            RandBiasFieldd(keys=IMAGE, prob=0.3, coeff_range=(0.0, 0.3)),
            RandHistogramShiftd(keys=IMAGE, prob=0.2, num_control_points=(5, 10)),
            RandScaleIntensityd(keys=IMAGE, factors=0.25, prob=0.5),
            RandShiftIntensityd(keys=IMAGE, offsets=0.15, prob=0.5),
            RandAdjustContrastd(keys=IMAGE, prob=0.4, gamma=gamma),
            RandGaussianNoised(keys=IMAGE, prob=0.2, std=0.04),
        ]
    )


def _tight_crop(keys: tuple[str, str], patch: int) -> OneOf:
    """Now and then keep only a random-sized box around the slice's centre, zero outside."""
    crop = Compose([
        RandSpatialCropd(keys=keys, roi_size=int(patch * TIGHT_CROP_MIN), max_roi_size=patch,
                         random_center=False, random_size=True),
        SpatialPadd(keys=keys, spatial_size=(patch, patch), mode="constant"),
    ])
    return OneOf([Identityd(keys=keys), crop], weights=[1.0 - TIGHT_CROP_PROB, TIGHT_CROP_PROB])
