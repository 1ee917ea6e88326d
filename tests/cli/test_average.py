"""``atriumseg average``: a model folder that segments and tells its lineage; bad requests exit 2 with the reason."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from helpers import STANDIN_CARD, STANDIN_LEVEL, dice, standin_model, standin_network, write_nifti

import atriumseg
from atriumseg.cli import EXIT_OK, EXIT_USAGE, main
from atriumseg.models.checkpoint import load_model
from atriumseg.synthetic import make_affine, synthetic_case


def test_average_writes_a_model_that_segments(model_folder: Path, tmp_path: Path, capsys) -> None:
    dimmer = standin_model(tmp_path / "dimmer", level=STANDIN_LEVEL - 0.1)
    target = tmp_path / "soup"
    assert main(["average", str(model_folder), str(dimmer), "-o", str(target)]) == EXIT_OK
    assert f"model {target}: the mean of 2 models' weights (sagittal network" in capsys.readouterr().out
    network, card = load_model(target)
    halfway = standin_network(level=STANDIN_LEVEL - 0.05).state_dict()  # the stand-in's level is its bias
    assert all(torch.allclose(value, halfway[key]) for key, value in network.state_dict().items())
    assert card.provenance["command"] == f"atriumseg average {model_folder} {dimmer} -o {target}"
    shape = (44, 46, 36)
    case = synthetic_case(shape, make_affine(shape, (1.5, 1.4, 1.6), "LPS", (0, 12, 8)), seed=3)
    mask = atriumseg.segment(write_nifti(tmp_path / "case.nii.gz", case.image, case.affine), target, device="cpu")
    assert isinstance(mask, nib.Nifti1Image) and np.allclose(mask.affine, case.affine)
    assert dice(np.asanyarray(mask.dataobj), case.label) > 0.85
    assert main(["info", str(target)]) == EXIT_OK
    assert "the mean of the weights of 2 models" in capsys.readouterr().out


def test_a_non_empty_output_and_another_design_exit_2_with_the_reason(
    model_folder: Path, tmp_path: Path, caplog
) -> None:
    coronal = replace(STANDIN_CARD, preprocessing=replace(STANDIN_CARD.preprocessing, plane="coronal"))
    other = standin_model(tmp_path / "coronal", coronal)
    with caplog.at_level(logging.ERROR):
        assert main(["average", str(model_folder), str(other), "-o", str(tmp_path / "soup")]) == EXIT_USAGE
        assert "another design" in caplog.text and "preprocessing.plane 'coronal' against 'sagittal'" in caplog.text
        assert not (tmp_path / "soup").exists()
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "notes.txt").write_text("mine")
        assert main(["average", str(model_folder), str(other), "-o", str(tmp_path / "full")]) == EXIT_USAGE
        assert "holds more than a model (notes.txt)" in caplog.text
        assert [p.name for p in (tmp_path / "full").iterdir()] == ["notes.txt"]
