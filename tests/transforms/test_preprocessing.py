"""The preprocessing chain puts a volume in the card's frame: RAS axes, the card's voxel sizes, intensities
scaled between percentiles, slices padded to min_slice_size and the network's divisor; it inverts exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from atriumseg.geometry import voxel_spacing
from atriumseg.models.card import Architecture, ModelDesign, Preprocessing
from atriumseg.synthetic import make_affine, synthetic_case
from atriumseg.transforms.preprocessing import IMAGE, LABEL, frame_key, frame_transforms, inference_transforms

SHAPE = (30, 26, 22)


def _design(**pre: object) -> ModelDesign:
    return ModelDesign(Architecture(in_channels=1, width=4, depth=3),
                       Preprocessing(context=0, **{"spacing": (1.5, 1.5), "slice_spacing": 2.0, **pre}))


def _data(codes: str = "LPS", spacing=(1.2, 1.0, 2.5), rotation=(0, 0, 10)) -> dict:
    case = synthetic_case(SHAPE, make_affine(SHAPE, spacing, codes, rotation), seed=5)
    affine = torch.from_numpy(case.affine)
    return {IMAGE: MetaTensor(torch.from_numpy(case.image)[None], affine=affine),
            LABEL: MetaTensor(torch.from_numpy(case.label.astype(np.float32))[None], affine=affine)}


@pytest.mark.parametrize(("plane", "slice_dim"), [("axial", 2), ("sagittal", 0), ("coronal", 1)])
def test_the_volume_arrives_in_ras_at_the_cards_voxel_sizes(plane: str, slice_dim: int) -> None:
    design = _design(plane=plane, min_slice_size=0)
    out = inference_transforms(design, label_key=LABEL)(_data(rotation=(0, 0, 0)))
    affine = out[IMAGE].affine.numpy()
    expected = [1.5, 1.5, 1.5]
    expected[slice_dim] = 2.0
    assert np.allclose(voxel_spacing(affine), expected, atol=1e-4)
    assert np.all(np.diag(affine[:3, :3]) > 0) and np.allclose(affine[:3, :3], np.diag(np.diag(affine[:3, :3])),
                                                                atol=1e-4)
    assert set(torch.unique(out[LABEL]).tolist()) <= {0.0, 1.0}  # labels by nearest neighbour


def test_intensities_are_scaled_between_the_cards_percentiles() -> None:
    chain = inference_transforms(_design(min_slice_size=0, percentiles=(1.0, 99.0), centre_clip=0.0))
    values = Compose(chain.transforms[:4])({IMAGE: _data()[IMAGE]})[IMAGE].as_tensor()  # before any padding
    assert values.min() == 0.0 and values.max() == 1.0
    below, above = (values == 0).float().mean().item(), (values == 1).float().mean().item()
    assert below == pytest.approx(0.01, abs=0.002) and above == pytest.approx(0.01, abs=0.002)  # 1% clipped each side


def test_a_card_with_centre_clip_keeps_the_atrium_bright_beside_a_bright_rim() -> None:
    """A rim 1.8 times the atrium's brightness over the first x-slices sets the plain window, squeezing the atrium
    (the synthetic volume's brightest structure) to about half; capped at the centre's percentile it reaches the top."""
    data = _data(rotation=(0, 0, 0))
    data[IMAGE][:, :3] = 1.8 * data[IMAGE].max()
    atrium = {}
    for clip in (0.0, 0.5):
        out = Compose(frame_transforms(_design(centre_clip=clip), LABEL))(dict(data))  # resampled and scaled
        atrium[clip] = out[IMAGE][out[LABEL] > 0.5].median().item()
    assert atrium[0.0] < 0.6 < 0.8 < atrium[0.5]
    assert frame_key(_design(centre_clip=0.5)) != frame_key(_design(centre_clip=0.0))


@pytest.mark.parametrize(("min_slice_size", "depth"), [(0, 3), (64, 3), (50, 4)])
def test_slices_are_padded_to_min_slice_size_then_to_the_divisor(min_slice_size: int, depth: int) -> None:
    design = ModelDesign(Architecture(in_channels=1, width=4, depth=depth),
                         Preprocessing(context=0, spacing=(1.5, 1.5), slice_spacing=2.0, min_slice_size=min_slice_size))
    chain = inference_transforms(design)
    out = chain({IMAGE: _data()[IMAGE]})[IMAGE]
    divisor = 2 ** (depth - 1)
    plain = Compose(chain.transforms[:4])({IMAGE: _data()[IMAGE]})[IMAGE]  # resampled and scaled, not padded
    for axis in (0, 1):  # the in-plane axes of an axial slice
        size = out.shape[1 + axis]
        assert size % divisor == 0 and size >= max(min_slice_size, plain.shape[1 + axis])
        assert size < max(min_slice_size, plain.shape[1 + axis]) + divisor
    assert out.shape[3] == plain.shape[3]  # the slice axis is never padded


def test_the_chain_inverts_to_the_input_grid() -> None:
    data = _data()
    chain = inference_transforms(_design(min_slice_size=64), label_key=LABEL)
    restored = chain.inverse(chain({k: v.clone() for k, v in data.items()}))
    assert restored[LABEL].shape == data[LABEL].shape
    assert np.allclose(restored[LABEL].affine.numpy(), data[LABEL].affine.numpy(), atol=1e-5)
    agreement = (restored[LABEL].as_tensor() > 0.5) == (data[LABEL].as_tensor() > 0.5)
    assert agreement.float().mean() > 0.97, f"only {agreement.float().mean():.3f} of voxels agree after the round trip"
