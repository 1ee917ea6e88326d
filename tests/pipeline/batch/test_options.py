"""Batch options: the formats the CLI offers are the ones the writers can write."""

from __future__ import annotations

from dataclasses import fields

from atriumseg.pipeline.analysis.mesh import FRAME_SIGNS, MESH_SUFFIXES
from atriumseg.pipeline.batch.options import DICOM_SEG, MASK_FORMATS, MESH_FORMATS, MESH_FRAMES, BatchOptions


def test_mesh_formats_and_frames_are_the_ones_the_mesh_writer_knows() -> None:
    assert sorted(f".{f}" for f in MESH_FORMATS) == sorted(MESH_SUFFIXES)
    assert sorted(MESH_FRAMES) == sorted(FRAME_SIGNS)


def test_the_defaults_are_a_nifti_run_that_changes_nothing_it_did_not_write(tmp_path) -> None:
    options = BatchOptions(output=tmp_path)
    assert options.fmt == MASK_FORMATS[0] == "nii.gz" and DICOM_SEG in MASK_FORMATS
    assert (options.overwrite, options.qc, options.probabilities, options.tta, options.mesh) == (False,) * 4 + (None,)
    assert options.shard == (0, 1) and options.workers >= 1 and dict(options.patients) == {}
    assert {f.name for f in fields(BatchOptions)} >= {"output", "fmt", "mesh", "mesh_frame", "patients", "anonymous"}
