"""Training slices: foreground-balanced on volumes of any in-plane size, the label cut with the image, drawn from a
compact cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor, get_track_meta
from monai.transforms import Compose

from atriumseg.models.card import Architecture, ModelCard, Preprocessing
from atriumseg.transforms.augmentation import (
    BG,
    CROP_MARGIN,
    DARKEN,
    FG,
    RandDarkenAtriumd,
    WithoutMetadata,
    cached_transforms,
    compact_indices,
    training_transforms,
)
from atriumseg.transforms.context import NeighbourView, StackNeighboursd
from atriumseg.transforms.preprocessing import IMAGE, LABEL

PATCH = 32


def _cached(shape: tuple[int, int, int], plane: str, corrupt: float | None = None) -> dict:
    """A volume whose only bright voxels are its small labelled block, on a dim ramp (a window that is not one value),
    through the cached chain; ``corrupt`` is written into its first slice."""
    card = ModelCard(architecture=Architecture(in_channels=3, width=4, depth=3),
                     preprocessing=Preprocessing(plane=plane, spacing=(1.0, 1.0), slice_spacing=1.0, context=1))
    image = np.linspace(0.0, 0.2, np.prod(shape), dtype=np.float32).reshape(shape)
    label = np.zeros(shape, np.float32)
    block = tuple(slice(n // 2 - 2, n // 2 + 2) for n in shape)
    image[block], label[block] = 1.0, 1.0
    if corrupt is not None:
        image[0] = corrupt  # one slice: more than the 0.5% of voxels beyond the window's lower percentile
    chain = cached_transforms(card, None, PATCH)
    chain.transforms = chain.transforms[2:]  # skip loading: the arrays are given
    data = {k: MetaTensor(torch.from_numpy(a)[None], affine=torch.eye(4)) for k, a in ((IMAGE, image), (LABEL, label))}
    return card, chain(data)


@pytest.mark.parametrize(
    ("shape", "plane"), [((24, 20, 18), "axial"), ((18, 20, 24), "sagittal"), ((60, 64, 20), "axial")]
)
def test_positive_slices_hold_foreground_even_when_the_volume_is_smaller_than_a_crop(shape, plane) -> None:
    card, cached = _cached(shape, plane)
    assert all(n >= int(PATCH * CROP_MARGIN) for d, n in enumerate(cached[LABEL].shape[1:])
               if d != card.preprocessing.slice_dim)
    augment = training_transforms(card, PATCH, slices_per_volume=8)
    augment.set_random_state(seed=0)
    slices = [s for _ in range(25) for s in augment(cached)]
    with_atrium = np.mean([float(s[LABEL].sum() > 0) for s in slices])
    assert with_atrium > 0.5, f"only {with_atrium:.0%} of slices hold foreground; 2 of 3 are drawn on it"
    for s in slices:
        assert s[IMAGE].shape == (3, PATCH, PATCH) and s[LABEL].shape == (1, PATCH, PATCH)


@pytest.mark.parametrize("corrupt", [np.nan, np.inf, -np.inf])
def test_nan_and_infinite_voxels_are_read_as_zero_as_inference_reads_them(corrupt: float) -> None:
    """A NaN would make the window's percentiles, so every cached voxel, NaN, and a slice of infinities an end of the
    window; the cache sees 0 there instead."""
    _, cached = _cached((24, 20, 18), "axial", corrupt=corrupt)
    _, zeroed = _cached((24, 20, 18), "axial", corrupt=0.0)
    assert torch.isfinite(cached[IMAGE]).all()
    assert torch.equal(cached[IMAGE].as_tensor(), zeroed[IMAGE].as_tensor())


def test_training_slices_are_plain_tensors_and_metadata_tracking_is_restored() -> None:
    """The random tail runs untracked (its cost, not its draws); the rest of the process still tracks metadata."""
    card, cached = _cached((24, 20, 18), "axial")
    assert get_track_meta()
    augment = training_transforms(card, PATCH, slices_per_volume=4)
    augment.set_random_state(seed=0)
    untracked = augment(cached)
    assert all(type(s[k]) is torch.Tensor for s in untracked for k in (IMAGE, LABEL))
    assert get_track_meta(), "tracking is on again after the chain"
    tracked = Compose(augment.transforms)
    tracked.set_random_state(seed=0)
    for plain, meta in zip(untracked, tracked(cached), strict=True):
        assert isinstance(meta[IMAGE], MetaTensor)
        assert torch.equal(plain[IMAGE], meta[IMAGE].as_tensor()) and torch.equal(plain[LABEL], meta[LABEL].as_tensor())


def test_a_lower_gamma_range_brightens_the_mid_tones() -> None:
    """The same draws through gamma 0.4 and 2.5: only the contrast curve differs, and it lifts a ramp's mid-tones."""
    card, cached = _cached((24, 20, 18), "axial")
    cached[IMAGE] = torch.linspace(0.0, 1.0, cached[IMAGE].numel()).reshape(cached[IMAGE].shape)
    means = {}
    for gamma in ((0.4, 0.4), (2.5, 2.5)):
        augment = training_transforms(card, PATCH, slices_per_volume=4, gamma=gamma)
        augment.set_random_state(seed=0)
        means[gamma] = float(np.mean([s[IMAGE].mean() for _ in range(10) for s in augment(cached)]))
    assert means[(0.4, 0.4)] > means[(2.5, 2.5)] + 0.02, means


def test_a_wider_zoom_range_spreads_the_atriums_area_more() -> None:
    """The same draws through zoom 0.05 and 0.5: the labelled block's area on the drawn slices varies with the product
    of its two axes' scale factors, so far more with the wider range (rotation and the tight crop draw alike in
    both)."""
    card, cached = _cached((48, 48, 18), "axial")
    spread = {}
    for zoom in (0.05, 0.5):
        augment = training_transforms(card, PATCH, slices_per_volume=4, zoom=zoom)
        augment.set_random_state(seed=0)
        areas = [float(s[LABEL].sum()) for _ in range(20) for s in augment(cached) if s[LABEL].sum() > 0]
        spread[zoom] = float(np.std(areas) / np.mean(areas))
    assert spread[0.5] > 2 * spread[0.05], spread


def test_darkening_scales_the_atrium_by_the_drawn_factor_fading_over_its_edge_and_leaves_the_far_surround() -> None:
    """Every channel alike: the atrium's middle by the drawn factor (within :data:`DARKEN`), its edge between, the far
    surround untouched; the factor follows the transform's seed."""
    label = torch.zeros(1, 40, 40)
    label[:, 12:28, 12:28] = 1.0
    image = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(0)) + 0.5
    factors = []
    for seed in (0, 0, 1):
        darken = RandDarkenAtriumd(keys=IMAGE, label_key=LABEL, prob=1.0)
        darken.set_random_state(seed=seed)
        out = darken({IMAGE: image, LABEL: label})
        ratio = out[IMAGE] / image
        factors.append(float(ratio[0, 20, 20]))
        assert DARKEN[0] <= factors[-1] <= DARKEN[1]
        assert torch.allclose(ratio[:, 18:22, 18:22], torch.tensor(factors[-1]), atol=1e-4)
        assert factors[-1] < float(ratio[1, 20, 12]) < 1.0  # the label's edge: part way
        assert torch.equal(out[IMAGE][:, :4], image[:, :4]) and torch.equal(out[LABEL], label)
    assert factors[0] == factors[1] != factors[2]


def test_darkening_is_left_out_of_the_chain_at_share_zero() -> None:
    card, _ = _cached((24, 20, 18), "axial")
    assert not any(isinstance(t, RandDarkenAtriumd) for t in training_transforms(card, PATCH, 2).transforms)
    assert any(isinstance(t, RandDarkenAtriumd) for t in training_transforms(card, PATCH, 2, darken=0.1).transforms)


def _stacked_cache(card: ModelCard, data: dict) -> dict:
    """The layout training cached before: the cached chain without its compact storage (its last three steps), every
    slice then stacked with its neighbours, the label as given (float32), 64-bit indices."""
    chain = cached_transforms(card, None, PATCH).transforms[2:]  # skip loading: the arrays are given
    pre = card.preprocessing
    return Compose([*chain[:-3], StackNeighboursd(keys=IMAGE, slice_dim=pre.slice_dim, context=pre.context)])(data)


@pytest.mark.parametrize(("shape", "plane"), [((24, 20, 18), "axial"), ((18, 20, 24), "sagittal")])
def test_the_compact_cache_draws_the_slices_and_loss_targets_a_cache_of_stacked_neighbours_drew(shape, plane) -> None:
    """The cache holds the image once with its edge slices, the label as bytes and the indices in 32 bits; the tail
    draws from it exactly the images, and the labels as the loss reads them (above 0.5), that it drew from the
    stacked layout (same seed), whatever the label's values: 0.5 is background there, 2 and 255 foreground."""
    card, _ = _cached(shape, plane)
    image = np.linspace(0.0, 0.2, np.prod(shape), dtype=np.float32).reshape(shape)
    label = np.zeros(shape, np.float32)
    block = tuple(slice(n // 2 - 3, n // 2 + 3) for n in shape)
    image[block], label[block] = 1.0, 1.0
    label[block[0], block[1], block[2].start] = 0.5  # a soft edge, as a linearly resampled label has
    label[block[0].start] = 255.0
    label[block[0].stop - 1] = 2.0
    data = {k: MetaTensor(torch.from_numpy(a)[None], affine=torch.eye(4)) for k, a in ((IMAGE, image), (LABEL, label))}
    chain = cached_transforms(card, None, PATCH)
    chain.transforms = chain.transforms[2:]  # skip loading: the arrays are given
    compact, stacked = chain(dict(data)), _stacked_cache(card, dict(data))
    dim, context = card.preprocessing.slice_dim, card.preprocessing.context
    assert compact[IMAGE].shape[0] == 1 and compact[IMAGE].shape[dim + 1] == stacked[IMAGE].shape[dim + 1] + 2 * context
    assert (compact[LABEL].dtype, compact[LABEL + FG].dtype, compact[LABEL + BG].dtype) == (
        torch.uint8, torch.int32, torch.int32)
    augment = training_transforms(card, PATCH, slices_per_volume=6)
    assert isinstance(augment.transforms[0].func[0], NeighbourView)  # Lambdad keeps one function per key
    from_stack = WithoutMetadata(training_transforms(card, PATCH, slices_per_volume=6).transforms[1:])  # own RNGs
    for chain in (augment, from_stack):
        chain.set_random_state(seed=3)
    for _ in range(5):
        for new, old in zip(augment(compact), from_stack(stacked), strict=True):
            assert new[LABEL].dtype == torch.float32
            assert torch.equal(new[IMAGE], old[IMAGE]) and torch.equal(new[LABEL], (old[LABEL] > 0.5).float())


def test_indices_too_large_for_32_bits_stay_64_bits() -> None:
    assert compact_indices(torch.tensor([0, 2**31 - 1])).dtype == torch.int32
    assert torch.equal(compact_indices(torch.tensor([0, 2**31])), torch.tensor([0, 2**31]))
    assert compact_indices(torch.tensor([], dtype=torch.int64)).dtype == torch.int32
