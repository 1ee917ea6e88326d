"""The demo: the bundled sample segmented, its mask on the sample's grid, its figures those of the written mask."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from atriumseg.demo import SAMPLE, run_demo, sample_paths
from atriumseg.pipeline.analysis.metrics import case_metrics


def test_the_demo_reports_the_figures_of_the_mask_it_wrote(tmp_path: Path, segmenter) -> None:
    result = run_demo(tmp_path, segmenter)
    image, label = (nib.load(p) for p in sample_paths())
    mask = nib.load(result.mask)
    assert result.mask == tmp_path / f"{SAMPLE}_mask.nii.gz" and result.overlay == tmp_path / f"{SAMPLE}_overlay.png"
    assert mask.shape == image.shape and np.array_equal(mask.affine, image.affine)
    expected = case_metrics(np.asarray(mask.dataobj), np.asarray(label.dataobj) > 0.5, image.affine)
    assert result.dice == pytest.approx(expected.dice) and result.volume_ml == pytest.approx(expected.predicted_ml)
    assert result.true_volume_ml == pytest.approx(expected.true_ml) and result.true_volume_ml > 10
    assert result.overlay.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = run_demo(tmp_path, segmenter)  # an earlier demo's files are replaced
    assert again.dice == result.dice and sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [result.mask.name, result.overlay.name])
