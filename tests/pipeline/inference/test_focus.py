"""Focused inference, with a stand-in network whose output at a pixel depends on that pixel alone.

Such a network makes cropping exact, so these tests pin down the focusing logic itself: the
locating pass, the in-plane box, the slab that grows until an empty slice, the box that widens
when the atrium reaches its edge, and the fall-back to the whole volume.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from monai.data import MetaTensor
from torch import nn

from atriumseg.models.card import Architecture, ModelCard, Postprocessing, Preprocessing
from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.synthetic import make_affine
from atriumseg.transforms.preprocessing import IMAGE, inference_transforms

SHAPE = (48, 200, 190)  # RAS at 1.5 mm: 48 sagittal slices of 200 x 190
CARD = ModelCard(
    architecture=Architecture(in_channels=3, width=8, depth=4),
    preprocessing=Preprocessing(plane="sagittal", spacing=(1.5, 1.5), context=1, slice_spacing=0.0, min_slice_size=0,
                                centre_clip=0.0),  # blobs anywhere in the field, at 1000 against 0: no cap
    postprocessing=Postprocessing(threshold=0.5, largest_component=True),
)


class Brightness(nn.Module):
    """Logit +10 where the centre channel is bright (scaled above 0.5), -10 elsewhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 40.0 * (x[:, 1:2] - 0.5)


class Counting(Segmenter):
    """A Segmenter that records the shape of every batch of slices its network sees."""

    def __init__(self, focus: bool) -> None:
        super().__init__(Brightness(), CARD, device="cpu", focus=focus)
        self.seen: list[tuple[int, ...]] = []
        self.network.register_forward_hook(lambda _, args, __: self.seen.append(tuple(args[0].shape)))

    def voxels_seen(self) -> int:
        return sum(int(np.prod(shape)) // shape[1] for shape in self.seen)


def _volume(blobs: list[tuple[slice, slice, slice]]) -> MetaTensor:
    """Dim noise with bright boxes: the 'atrium' is whatever is bright."""
    image = np.random.default_rng(0).uniform(0, 100, SHAPE).astype(np.float32)
    for blob in blobs:
        image[blob] = 1000.0
    return MetaTensor(torch.from_numpy(image)[None], affine=torch.from_numpy(make_affine(SHAPE, (1.5, 1.5, 1.5))))


def _masks(image: MetaTensor) -> tuple[torch.Tensor, torch.Tensor, Counting, Counting]:
    whole, focused = Counting(focus=False), Counting(focus=True)
    return whole(image).as_tensor(), focused(image).as_tensor(), whole, focused


def test_only_the_atriums_box_on_its_slab_is_segmented() -> None:
    atrium = (slice(14, 35), slice(80, 110), slice(60, 95))
    whole, focused, all_slices, focus = _masks(_volume([atrium]))
    expected = torch.zeros((1, *SHAPE), dtype=torch.uint8)
    expected[(slice(None), *atrium)] = 1
    assert torch.equal(whole, expected) and torch.equal(focused, expected)
    assert focus.voxels_seen() < 0.45 * all_slices.voxels_seen()
    cropped = [shape for shape in focus.seen if shape[2:] != all_slices.seen[0][2:]]
    assert cropped and all(h % 8 == 0 and w % 8 == 0 and h < 200 and w < 190 for *_, h, w in cropped)


def test_box_widens_when_the_atrium_reaches_past_what_the_sampled_slices_showed() -> None:
    body = (slice(14, 35), slice(80, 110), slice(60, 95))
    vein = (slice(26, 29), slice(95, 100), slice(95, 180))  # a long thin branch, between the sampled slices
    whole, focused, _, focus = _masks(_volume([body, vein]))
    assert int(whole.sum()) > 0 and torch.equal(whole, focused)
    widths = sorted({shape[-1] for shape in focus.seen[1:]})
    assert len(widths) > 1, "the box should have widened to take in the branch"


def test_an_atrium_the_locating_pass_misses_is_still_found() -> None:
    """Sampled slices are 13 apart here (20 mm); a thin atrium between them sends every slice through."""
    thin = (slice(8, 11), slice(70, 130), slice(60, 120))
    whole, focused, all_slices, focus = _masks(_volume([thin]))
    assert int(whole.sum()) == 3 * 60 * 60 and torch.equal(whole, focused)
    assert focus.voxels_seen() > all_slices.voxels_seen()  # the locating pass, then the whole volume


def test_test_time_augmentation_focuses_on_the_averaged_probability() -> None:
    """A dim slice that only the augmented passes call atrium must not end the slab for the average."""
    card = replace(CARD, postprocessing=Postprocessing(threshold=0.3))
    image = _volume([(slice(9, 35), slice(80, 110), slice(60, 96))])
    image[0, 15, 80:110, 60:96] = 476.5  # scaled to 0.4765: p 0.28 alone, 0.35 averaged over the 5 passes
    whole = Segmenter(Brightness(), card, device="cpu", focus=False)(image, tta=True).as_tensor()
    focused = Segmenter(Brightness(), card, device="cpu", focus=True)(image, tta=True).as_tensor()
    assert int(whole[0, 9:35].sum()) == 26 * 30 * 36 and torch.equal(whole, focused)


def test_a_box_found_by_another_network_replaces_the_locating_pass() -> None:
    """Given ``near`` (an ensemble's first member's find: 2 of the atrium's 21 slices), no whole slice is
    segmented, and the slab grows from that box until its outer slices are empty."""
    atrium = (slice(14, 35), slice(80, 110), slice(60, 95))
    volume = _volume([atrium])
    prepared = inference_transforms(CARD)({IMAGE: volume})[IMAGE].as_tensor()
    focus = Counting(focus=True)
    inferer, predict = focus.members[0].inferer, focus.members[0].predict
    seen = focus.seen
    crop = inferer(prepared, predict, slice_mm=1.5, near=(slice(20, 22), slice(90, 100), slice(70, 80)))
    assert seen and all(shape[2:] != (200, 192) for shape in seen), "a whole slice went through the network"
    found = torch.zeros(prepared.shape[1:], dtype=torch.bool)
    found[crop.region[1:]] = crop.prob[0] > 0.5
    assert torch.equal(found, prepared[0] > 0.5) and int(found.sum()) == 21 * 30 * 35
