"""The model's part of a case: each per-case quantity computed once, a volume too large refused naming its file."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import write_nifti

from atriumseg.geometry import affine_with_axcodes
from atriumseg.pipeline.batch.inputs import InputCase
from atriumseg.pipeline.batch.options import BatchOptions
from atriumseg.pipeline.batch.plan import PlannedCase, case_outputs
from atriumseg.pipeline.batch.segment import read_case, segment_case
from atriumseg.pipeline.io.geometry import voxel_volume_ml
from atriumseg.pipeline.io.volumes import ImageReadError
from atriumseg.synthetic import make_affine, synthetic_case

SHAPE = (36, 38, 24)


def _planned(tmp_path: Path, affine: np.ndarray, name: str = "p.9") -> PlannedCase:
    case = synthetic_case(SHAPE, make_affine(SHAPE, (1.5, 1.5, 1.5), "RAS", (5, 0, 0)), seed=9)
    source = write_nifti(tmp_path / f"{name}.nii.gz", case.image, affine)
    input_case = InputCase(name, source)
    return PlannedCase(input_case, case_outputs(input_case, tmp_path / "out"))


def test_a_segmented_case_carries_its_anatomy_volume_and_output(tmp_path: Path, segmenter) -> None:
    affine = np.diag([1.5, 1.2, 2.0, 1.0])
    planned = _planned(tmp_path, affine)
    volume = read_case(planned.case)
    assert volume.name == "p.9"
    options = BatchOptions(output=tmp_path / "out", assume_orientation="ASL")
    segmented = segment_case(segmenter, planned, volume, options)
    np.testing.assert_allclose(segmented.anatomy, affine_with_axcodes(volume.tensor.affine.numpy(), "ASL"))
    result = segmented.result
    assert result.voxels == int(segmented.mask.sum()) > 0
    stored = volume.tensor.affine.numpy()  # the header's affine, as stored (float32)
    np.testing.assert_allclose(stored, affine, rtol=1e-6)
    assert result.volume_ml == result.voxels * voxel_volume_ml(stored)
    assert result.output == str(tmp_path / "out" / "p.9.nii.gz") and result.status == "ok"
    assert segmented.mask.shape == segmented.probabilities.shape == SHAPE
    assert segmented.timed(2.5).result.seconds == 2.5 and segmented.result.seconds == 0.0


def test_a_volume_too_large_once_resampled_is_refused_naming_its_file(tmp_path: Path, segmenter) -> None:
    planned = _planned(tmp_path, np.diag([1000.0, 1000.0, 1000.0, 1.0]), "in_metres")
    with pytest.raises(ImageReadError, match=rf"^{re.escape(str(planned.case.path))}: resampled .*is it in micrometres,"
                                         r" read as mm\?"):
        segment_case(segmenter, planned, read_case(planned.case), BatchOptions(output=tmp_path))


def test_a_header_whose_sform_disagrees_with_pixdim_is_flagged_with_the_grid_it_was_measured_on(
    tmp_path: Path, segmenter
) -> None:
    qform = np.diag([1.5, 1.5, 1.5, 1.0])
    planned = _planned(tmp_path, qform)
    image = nib.load(planned.case.path)
    image.set_sform(np.diag([2.0, 2.0, 2.0, 1.0]), 1)  # the sform says 2 mm; pixdim and the qform say 1.5 mm
    nib.save(image, planned.case.path)
    result = segment_case(segmenter, planned, read_case(planned.case), BatchOptions(output=tmp_path / "out")).result
    assert result.volume_ml == pytest.approx(result.voxels * 1.5**3 / 1000)
    assert ("header: affine voxels 2 x 2 x 2 mm disagree with pixdim; read and measured as MONAI repairs it, "
            "1.5 x 1.5 x 1.5 mm") in result.flags
    plain = _planned(tmp_path, qform, "plain")
    assert not any(f.startswith("header") for f in segment_case(
        segmenter, plain, read_case(plain.case), BatchOptions(output=tmp_path / "out")).result.flags)
