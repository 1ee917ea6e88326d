"""The Segmenter: one model or an ensemble, probabilities and masks on the input grid.

Stand-in networks (``helpers.standin_network``, made sharp here so the background probability falls
below the 0.01 floor) give an output at a pixel that depends on that pixel alone, so every
crop, focus and restoration is exact and the ensemble's average can be checked to the last bit.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import dice, standin_network, write_nifti
from monai.data import MetaTensor
from monai.transforms import Spacingd

import atriumseg
from atriumseg.models.card import Architecture, ModelCard, Postprocessing, Preprocessing
from atriumseg.models.checkpoint import save_model
from atriumseg.models.ensemble import EnsembleCard
from atriumseg.pipeline.inference.focus import FocusSettings
from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.pipeline.io.volumes import ImageReadError, read_image
from atriumseg.synthetic import make_affine, synthetic_case
from atriumseg.transforms.preprocessing import inference_transforms

SHAPE = (44, 46, 36)
MEMBERS = {  # name: (card, level at which the stand-in calls a pixel atrium)
    "axial": (ModelCard(
        architecture=Architecture(in_channels=3, width=4, depth=3),
        preprocessing=Preprocessing(plane="axial", spacing=(1.5, 1.5), context=1, slice_spacing=1.5, min_slice_size=0),
    ), 0.8),
    "sagittal": (ModelCard(
        architecture=Architecture(in_channels=1, width=4, depth=3),
        preprocessing=Preprocessing(plane="sagittal", spacing=(1.3, 1.6), context=0, slice_spacing=0.0,
                                    min_slice_size=0),
    ), 0.75),
    "coronal": (ModelCard(
        architecture=Architecture(in_channels=3, width=4, depth=4),
        preprocessing=Preprocessing(orientation="LPS", plane="coronal", spacing=(1.4, 1.4), context=1,
                                    slice_spacing=2.0, min_slice_size=64),
    ), 0.85),
}
ENSEMBLE_POST = Postprocessing(threshold=0.4, largest_component=True)


def _sharp(card: ModelCard, level: float) -> torch.nn.Module:
    """The stand-in with logit ``400 * relu(x - level) - 12``: background probability 6e-6, atrium above level+0.03."""
    network = standin_network(card, level)
    with torch.no_grad():
        network.outc.weight[0, 0] = 400.0
        network.outc.bias[0] = -12.0
    return network


def _image(seed: int = 7) -> tuple[MetaTensor, np.ndarray]:
    case = synthetic_case(SHAPE, make_affine(SHAPE, (1.5, 1.4, 1.6), "LPS", (0, 12, 8)), seed=seed)
    return MetaTensor(torch.from_numpy(case.image)[None], affine=torch.from_numpy(case.affine)), case.label


def _ensemble_folder(folder: Path, post: Postprocessing = ENSEMBLE_POST) -> Path:
    for name, (card, level) in MEMBERS.items():
        save_model(_sharp(card, level), card, folder / name)
    EnsembleCard(tuple(MEMBERS), post).save(folder)
    return folder


@pytest.mark.parametrize("focus", [False, True])
@pytest.mark.parametrize("fusion", ["mean", "logit_mean"])
def test_ensemble_probabilities_fuse_its_members_on_the_input_grid(tmp_path: Path, focus: bool, fusion: str) -> None:
    """The card's fusion rule on the members' maps, each as the member alone gives it: their mean, or the sigmoid of
    their mean logit (probabilities clipped to [0.005, 0.995])."""
    image, _ = _image()
    post = replace(ENSEMBLE_POST, fusion=fusion)
    ensemble = Segmenter.from_path(_ensemble_folder(tmp_path / "fused", post), device="cpu", focus=focus)
    alone = [Segmenter(_sharp(card, level), card, device="cpu", focus=focus) for card, level in MEMBERS.values()]
    raw = torch.stack([s.members[0].probabilities(s.members[0].frame(image), image, False, 0.01)[0] for s in alone])
    if fusion == "mean":
        expected = raw.mean(0)  # each member's own map, before the floor that only the fused map gets
    else:
        clipped = raw.clamp(0.005, 0.995)
        expected = torch.sigmoid(torch.log(clipped / (1 - clipped)).mean(0))
    expected[expected < 0.01] = 0
    assert len(ensemble.members) == 3 and ensemble.card.postprocessing == post
    assert not torch.equal(raw[0], raw[1]), "members should disagree somewhere"
    prob = ensemble.probabilities(image)
    # crops resample from other origins: 1e-6 apart, which the logit's slope near the clip (200) amplifies
    torch.testing.assert_close(prob.as_tensor(), expected, atol=1e-5 if fusion == "mean" else 5e-5, rtol=0)
    mask = ensemble(image)
    assert torch.equal(mask.as_tensor()[0] > 0, torch.from_numpy(_largest(expected[0].numpy() > 0.4)))


def test_member_probabilities_are_the_maps_the_ensemble_fuses(tmp_path: Path) -> None:
    """Each member's map before fusion, in the card's order, on the input grid: their mean (above the floor) is the
    ensemble's probability map, to the last bit."""
    image, _ = _image()
    ensemble = Segmenter.from_path(_ensemble_folder(tmp_path / "fused"), device="cpu")
    maps = list(ensemble.member_probabilities(image))
    assert len(maps) == 3 and all(m.shape == (1, *SHAPE) for m in maps)
    assert not torch.equal(maps[0], maps[1]) and not torch.equal(maps[1], maps[2]), "members should disagree"
    expected = (maps[0] + maps[1] + maps[2]) / 3
    expected[expected < 0.01] = 0
    assert torch.equal(ensemble.probabilities(image).as_tensor(), expected)


def _largest(mask: np.ndarray) -> np.ndarray:
    from scipy.ndimage import label

    labels, count = label(mask)
    sizes = np.bincount(labels.ravel())[1:]
    return labels == 1 + int(np.argmax(sizes)) if count else mask


def test_only_the_first_member_locates_the_atrium(tmp_path: Path) -> None:
    """Later members run on the box the first found, never on whole slices (a narrow box, as on a large volume)."""
    image, _ = _image()
    narrow = FocusSettings(slack_px=2, context_divisors=1)
    ensemble = Segmenter.from_path(_ensemble_folder(tmp_path / "fused"), device="cpu", focus=narrow)
    seen: dict[int, list[tuple[int, ...]]] = {i: [] for i in range(3)}
    for i, member in enumerate(ensemble.members):
        member.network.register_forward_hook(lambda _, args, __, i=i: seen[i].append(tuple(args[0].shape[2:])))
    ensemble.probabilities(image)
    whole = [tuple(inference_transforms(m.card)({"image": image})["image"].shape[1:]) for m in ensemble.members]
    for i, member in enumerate(ensemble.members):
        plane = tuple(n for d, n in enumerate(whole[i]) if d != member.card.preprocessing.slice_dim)
        assert seen[i], f"member {i} never ran"
        if i > 0:
            assert all(h < plane[0] or w < plane[1] for h, w in seen[i]), (i, seen[i], plane)
    assert any(shape == tuple(n for d, n in enumerate(whole[0]) if d != 2) for shape in seen[0]), "no locating pass"


def test_a_volume_too_large_for_any_member_is_refused_before_any_member_runs() -> None:
    image, _ = _image()
    (card, level), (fine_card, _) = MEMBERS["axial"], MEMBERS["sagittal"]
    fine = replace(fine_card, preprocessing=replace(fine_card.preprocessing, spacing=(0.05, 0.05), slice_spacing=0.05))
    never = torch.nn.Identity()
    ensemble = Segmenter(_sharp(card, level), card, device="cpu", members=[(never, fine)])
    for member in ensemble.members:
        member.network.register_forward_hook(lambda *_: pytest.fail("a member ran on a volume it should refuse"))
    with pytest.raises(ImageReadError, match=r"^the image: resampled to the model's voxel size .* beyond the bound"):
        ensemble.probabilities(image)
    image.meta["filename_or_obj"] = "/scans/case 7.nii.gz"  # as read_image and MONAI's LoadImage name a tensor's file
    with pytest.raises(ImageReadError, match=r"^/scans/case 7.nii.gz: resampled to the model's voxel size"):
        ensemble.probabilities(image)
    huge = MetaTensor(torch.zeros(1, 1, 1, 1, dtype=torch.uint8).expand(1, 2000, 2000, 2000))  # 8 GB, 32 as float
    with pytest.raises(ImageReadError, match=r"^the image: resampled .* beyond the bound"):  # before any float copy
        Segmenter(_sharp(card, level), card, device="cpu").probabilities(huge, assume_orientation="LPS")
    with pytest.raises(ImageReadError, match=r"^/scans/case 7.nii.gz: resampled"):  # at the call, not the first map
        ensemble.member_probabilities(image)


def test_ensemble_masks_keep_the_input_geometry(tmp_path: Path) -> None:
    """An ensemble folder works wherever a model folder does: a NIfTI path in, its header out."""
    image, label = _image(11)
    path = write_nifti(tmp_path / "case.nii.gz", image[0].numpy(), image.affine.numpy())
    mask = atriumseg.segment(path, _ensemble_folder(tmp_path / "fused"), device="cpu")
    assert isinstance(mask, nib.Nifti1Image) and mask.shape == SHAPE
    assert np.allclose(mask.affine, image.affine.numpy(), atol=1e-6)
    score = dice(np.asanyarray(mask.dataobj), label)
    assert score > 0.85, f"ensemble Dice {score:.3f} against the world-space label"


def test_a_single_model_segmentation_is_consistent() -> None:
    """Probabilities, thresholded map and cleaned mask agree; clean-up keeps the largest component only."""
    card, level = MEMBERS["axial"]
    image, _ = _image()
    image[0, 2:5, 2:5, 2:5] = image.max()  # a small bright speck far from the atrium
    segmenter = Segmenter(_sharp(card, level), card, device="cpu", focus=False)
    seg = segmenter.segment(image)
    assert torch.equal(seg.raw.as_tensor(), (seg.probabilities.as_tensor() > 0.5).to(torch.uint8))
    assert torch.equal(seg.mask.as_tensor()[0] > 0, torch.from_numpy(_largest(seg.raw[0].numpy() > 0)))
    assert int(seg.raw.sum()) > int(seg.mask.sum()) > 0
    assert np.allclose(seg.mask.affine, image.affine) and seg.mask.dtype == torch.uint8
    kept = Segmenter(_sharp(card, level), replace(card, postprocessing=Postprocessing(0.5, False)), device="cpu")
    assert torch.equal(kept.clean(seg.raw).as_tensor(), seg.raw.as_tensor())


def test_a_card_that_keeps_every_component_is_not_focused_on_one() -> None:
    card, level = MEMBERS["axial"]
    image, _ = _image()
    image[0, 1:9, 1:9, 1:9] = image.max()  # a second bright structure, far from the atrium
    keep_all = replace(card, postprocessing=Postprocessing(0.5, largest_component=False))
    focused = Segmenter(_sharp(card, level), keep_all, device="cpu")
    whole = Segmenter(_sharp(card, level), keep_all, device="cpu", focus=False)
    assert torch.equal(focused(image).as_tensor(), whole(image).as_tensor())
    assert int(focused(image)[0, 1:9, 1:9, 1:9].sum()) > 0  # the other structure is kept, as the card asks


def test_probabilities_below_the_floor_are_zero() -> None:
    """A background of 0.004 (below the 0.01 floor) is 0 in the map, also in the margin resampled around the atrium."""
    card, level = MEMBERS["axial"]
    network = _sharp(card, level)
    with torch.no_grad():
        network.outc.bias[0] = -5.5
    prob = Segmenter(network, card, device="cpu", focus=False).probabilities(_image()[0]).as_tensor()
    assert int(((prob > 0) & (prob < 0.01)).sum()) == 0 and int((prob > 0.5).sum()) > 100


def test_batch_size_below_one_is_refused() -> None:
    card, level = MEMBERS["axial"]
    with pytest.raises(ValueError, match="batch size must be at least 1, got 0"):
        Segmenter(_sharp(card, level), card, device="cpu", batch_size=0)


def test_an_ensemble_with_a_broken_member_is_refused_on_load(tmp_path: Path) -> None:
    folder = _ensemble_folder(tmp_path / "fused")
    (folder / "card.json").write_text(json.dumps({"members": ["axial", "nowhere"], "format_version": 1}))
    with pytest.raises(ValueError, match="member 'nowhere' has no folder"):
        Segmenter.from_path(folder, device="cpu")


def test_the_segment_command_takes_an_ensemble_folder(tmp_path: Path) -> None:
    from atriumseg.cli import EXIT_OK, main

    image, _ = _image(11)
    (tmp_path / "in").mkdir()
    write_nifti(tmp_path / "in" / "case.nii.gz", image[0].numpy(), image.affine.numpy())
    folder = _ensemble_folder(tmp_path / "fused")
    code = main(["segment", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(folder), "--quiet"])
    assert code == EXIT_OK
    mask = nib.load(tmp_path / "out" / "case.nii.gz")
    stored = read_image(tmp_path / "in" / "case.nii.gz").tensor  # the header's float32 affine, as the command reads it
    expected = Segmenter.from_path(folder, device="cpu")(stored)[0].numpy()
    assert np.array_equal(np.asanyarray(mask.dataobj), expected) and np.allclose(mask.affine, stored.affine.numpy())


def test_members_in_one_frame_resample_the_volume_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Axial and sagittal members on the same 1.5 mm RAS grid share the framed volume; their padding stays their own,
    and the average is what each would give alone."""
    axial, level = MEMBERS["axial"]
    sagittal = replace(axial, preprocessing=replace(axial.preprocessing, plane="sagittal", min_slice_size=64))
    for name, card in {"axial": axial, "sagittal": sagittal}.items():
        save_model(_sharp(card, level), card, tmp_path / "fused" / name)
    EnsembleCard(("axial", "sagittal"), ENSEMBLE_POST).save(tmp_path / "fused")
    image, _ = _image()
    alone = [Segmenter(_sharp(c, level), c, device="cpu").probabilities(image).as_tensor() for c in (axial, sagittal)]
    ensemble = Segmenter.from_path(tmp_path / "fused", device="cpu")
    calls = []
    resample = Spacingd.__call__
    monkeypatch.setattr(Spacingd, "__call__", lambda self, *a, **k: calls.append(1) or resample(self, *a, **k))
    prob = ensemble.probabilities(image)
    assert len(calls) == 1
    torch.testing.assert_close(prob.as_tensor(), torch.stack(alone).mean(0), atol=1e-5, rtol=0)
    calls.clear()
    Segmenter.from_path(_ensemble_folder(tmp_path / "three"), device="cpu").probabilities(image)
    assert len(calls) == 3, "members in different frames resample on their own"
