"""Test-time augmentation wraps a network call: the mean over the identity, gammas and shifted copies."""

from __future__ import annotations

import torch
from helpers import dice
from monai.data import MetaTensor

from atriumseg.pipeline.analysis.quality import border_entropy
from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.pipeline.inference.tta import TTA_GAMMAS, TestTimeAugmentation
from atriumseg.synthetic import make_affine, synthetic_case

SHAPE = (44, 46, 36)


def _pixelwise(x: torch.Tensor) -> torch.Tensor:
    """A stand-in network call whose output at a pixel is a known function of the centre channel there."""
    return torch.sigmoid(8.0 * x[:, 1:2] - 3.0)


def test_mean_of_the_identity_the_gammas_and_the_shifts_undone() -> None:
    """Shifting a pixel-wise call's input and shifting its output back gives the plain output, so the average is
    (3 f(x) + f(x^0.8) + f(x^1.25)) / 5 exactly."""
    x = torch.rand((4, 3, 24, 20), generator=torch.Generator().manual_seed(0))
    tta = TestTimeAugmentation(_pixelwise)
    expected = (3 * _pixelwise(x) + sum(_pixelwise(x ** g) for g in TTA_GAMMAS)) / 5
    assert tta.passes == 5
    torch.testing.assert_close(tta(x), expected, atol=1e-6, rtol=0)


def test_shifts_are_undone_for_a_call_that_moves_its_input() -> None:
    """A call whose output is its input moved by one pixel: each shifted pass, shifted back, agrees with it."""
    def moving(x: torch.Tensor) -> torch.Tensor:
        return torch.roll(x[:, :1], shifts=(1, 0), dims=(-2, -1))

    x = torch.rand((2, 1, 16, 16), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(TestTimeAugmentation(moving, gammas=())(x), moving(x), atol=1e-6, rtol=0)


def _case(seed: int, noise: float = 0.04):
    return synthetic_case(SHAPE, make_affine(SHAPE, (1.5, 1.4, 1.6), "LPS", (0, 12, 0)), seed=seed, noise=noise)


def test_tta_uncertainty_is_higher_on_a_noisier_copy(segmenter: Segmenter) -> None:
    figures = {}
    for noise in (0.04, 0.35):
        case = _case(91, noise=noise)
        seg = segmenter.segment(MetaTensor(case.image[None], affine=case.affine), tta=True)
        figures[noise] = border_entropy(seg.probabilities[0].numpy(), seg.mask[0].numpy())
    assert figures[0.35] > figures[0.04], figures


def test_tta_keeps_the_segmentation(segmenter: Segmenter) -> None:
    case = _case(92)
    mask = segmenter(MetaTensor(case.image[None], affine=case.affine), tta=True)
    score = dice(mask[0].numpy(), case.label)
    assert score > 0.8, f"TTA Dice {score:.3f}"
