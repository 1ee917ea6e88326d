"""``atriumseg assemble``: an ensemble folder that segments; every bad request is refused before anything is written."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import STANDIN_CARD, dice, standin_model, write_nifti

import atriumseg
from atriumseg._version import __version__
from atriumseg.cli import EXIT_OK, EXIT_USAGE, main
from atriumseg.models.ensemble import load_ensemble
from atriumseg.synthetic import make_affine, synthetic_case

CORONAL = replace(STANDIN_CARD, preprocessing=replace(STANDIN_CARD.preprocessing, plane="coronal", slice_spacing=1.5))


@pytest.fixture
def coronal_folder(tmp_path: Path) -> Path:
    return standin_model(tmp_path / "runs" / "coronal", CORONAL)


def test_assemble_writes_an_ensemble_that_segments(
    model_folder: Path, coronal_folder: Path, tmp_path: Path, capsys
) -> None:
    target = tmp_path / "fused"
    argv = ["assemble", "-o", str(target), f"axial={model_folder}", f"coronal={coronal_folder}", "--threshold", "0.4",
            "--fusion", "logit_mean"]
    assert main(argv) == EXIT_OK
    assert f"coronal: coronal network from {coronal_folder}" in capsys.readouterr().out
    models, card = load_ensemble(target)
    assert card.members == ("axial", "coronal") and card.postprocessing.threshold == 0.4
    assert card.postprocessing.fusion == "logit_mean"
    assert card.package_version == __version__
    assert card.provenance["member_sources"] == {"axial": str(model_folder), "coronal": str(coronal_folder)}
    assert [c.preprocessing.plane for _, c in models] == ["sagittal", "coronal"]
    shape = (44, 46, 36)
    case = synthetic_case(shape, make_affine(shape, (1.5, 1.4, 1.6), "LPS", (0, 12, 8)), seed=3)
    path = write_nifti(tmp_path / "case.nii.gz", case.image, case.affine)
    mask = atriumseg.segment(path, target, device="cpu")
    assert isinstance(mask, nib.Nifti1Image) and mask.shape == shape and np.allclose(mask.affine, case.affine)
    assert dice(np.asanyarray(mask.dataobj), case.label) > 0.85


@pytest.mark.parametrize("problem", ["no-equals", "same-name", "missing-model", "not-empty", "bad-threshold",
                                     "output-is-a-file", "card-name"])
def test_bad_requests_exit_2_and_write_nothing(
    problem: str, model_folder: Path, coronal_folder: Path, tmp_path: Path, caplog
) -> None:
    target = tmp_path / "fused"
    pairs = {
        "no-equals": [str(model_folder)],
        "same-name": [f"axial={model_folder}", f"axial={coronal_folder}"],
        "missing-model": [f"axial={model_folder}", f"coronal={tmp_path / 'missing'}"],
        "card-name": [f"axial={model_folder}", f"card.json={coronal_folder}"],
    }.get(problem, [f"axial={model_folder}", f"coronal={coronal_folder}"])
    argv = ["assemble", "-o", str(target), *pairs] + (["--threshold", "1.5"] if problem == "bad-threshold" else [])
    if problem == "not-empty":
        target.mkdir()
        (target / "notes.txt").write_text("mine")
    if problem == "output-is-a-file":
        target.write_text("mine")
    with caplog.at_level(logging.ERROR):
        if problem == "no-equals":
            with pytest.raises(SystemExit) as exit_info:
                main(argv)
            assert exit_info.value.code == EXIT_USAGE
        else:
            assert main(argv) == EXIT_USAGE
    reasons = {"same-name": "distinct", "missing-model": "member 'coronal'", "not-empty": "--overwrite",
               "bad-threshold": "threshold must be", "output-is-a-file": "is not a folder",
               "card-name": "own card file"}
    assert problem == "no-equals" or reasons[problem] in caplog.text
    if problem == "output-is-a-file":
        assert target.read_text() == "mine"
        return
    written = sorted(p.name for p in target.iterdir()) if target.exists() else []
    assert written == (["notes.txt"] if problem == "not-empty" else [])


def test_a_member_named_by_its_card_file_is_its_folder(model_folder: Path, coronal_folder: Path,
                                                      tmp_path: Path) -> None:
    argv = ["assemble", "-o", str(tmp_path / "fused"), f"axial={model_folder}", f"coronal={coronal_folder}/card.json"]
    assert main(argv) == EXIT_OK
    assert (tmp_path / "fused" / "coronal" / "model.safetensors").read_bytes() == \
        (coronal_folder / "model.safetensors").read_bytes()


def test_overwrite_replaces_the_ensembles_card(model_folder: Path, coronal_folder: Path, tmp_path: Path) -> None:
    target = tmp_path / "fused"
    assert main(["assemble", "-o", str(target), "--fusion", "logit_mean", f"axial={model_folder}"]) == EXIT_OK
    assert main(["assemble", "-o", str(target), f"axial={model_folder}", f"coronal={coronal_folder}"]) == EXIT_USAGE
    argv = ["assemble", "-o", str(target), "--overwrite", f"axial={model_folder}", f"coronal={coronal_folder}"]
    assert main(argv) == EXIT_OK
    assert load_ensemble(target)[1].members == ("axial", "coronal")
    assert load_ensemble(target)[1].postprocessing.fusion == "mean", "the card replaced, with the default fusion"
