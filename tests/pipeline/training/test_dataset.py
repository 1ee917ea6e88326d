"""MSD-layout datasets: cases named as inference names them, header fixes only where declared, honest folds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import write_msd_dataset

from atriumseg.pipeline.io.names import case_name
from atriumseg.pipeline.training.dataset import kfold_split, load_msd_dataset


def test_kfold_splits_cover_every_case_once() -> None:
    names = [f"c{i}" for i in range(7)]
    validation = [kfold_split(names, 3, fold)[1] for fold in range(3)]
    assert sorted(sum(validation, [])) == sorted(names)
    assert sorted(len(v) for v in validation) == [2, 2, 3]
    for fold in range(3):
        train_names, val_names = kfold_split(names, 3, fold)
        assert not set(train_names) & set(val_names) and sorted(train_names + val_names) == sorted(names)


def test_kfold_splits_depend_on_the_seed_not_on_the_order_given() -> None:
    names = [f"c{i}" for i in range(10)]
    assert kfold_split(names, 5, 1, seed=3) == kfold_split(names[::-1], 5, 1, seed=3)
    assert [kfold_split(names, 5, 1, seed=s)[1] for s in range(4)] != [kfold_split(names, 5, 1, seed=0)[1]] * 4


@pytest.mark.parametrize(("folds", "fold"), [(1, 0), (3, 3), (3, -1)])
def test_impossible_folds_are_refused(folds: int, fold: int) -> None:
    with pytest.raises(ValueError, match="0 <= fold < folds and folds >= 2"):
        kfold_split(["a", "b", "c"], folds, fold)


@pytest.mark.parametrize(
    ("name", "reference", "declared", "expected"),
    [
        ("LeftAtrium", "King's College London", "known", "ASL"),
        ("Synthetic", "atriumseg tests", "known", None),
        ("LeftAtrium", "King's College London", None, None),
        ("Synthetic", "atriumseg tests", "pir", "PIR"),
    ],
)
def test_header_fix_applies_only_where_declared(tmp_path: Path, name, reference, declared, expected) -> None:
    root = write_msd_dataset(tmp_path / "ds", [1])
    meta = json.loads((root / "dataset.json").read_text())
    meta.update(name=name, reference=reference)
    (root / "dataset.json").write_text(json.dumps(meta))
    assert load_msd_dataset(root, declared).orientation == expected


@pytest.mark.parametrize("file_name",
                         ["la_003.nii.gz", "exam_T1_3.0mm.nii.gz", "06SR5RBREL16DQ6M8LWS.nii", "a.b.c.nrrd"])
def test_cases_are_named_as_inference_names_their_images(tmp_path: Path, file_name: str) -> None:
    """One rule for a case's name: the MSD la_003 stays la_003, and dots before the suffix are kept."""
    root = write_msd_dataset(tmp_path / "ds", [1])
    meta = json.loads((root / "dataset.json").read_text())
    for folder in ("imagesTr", "labelsTr"):  # the same content, stored as the name says (the name is what counts)
        source = root / folder / "case_001.nii.gz"
        if file_name.endswith(".nrrd"):
            shutil.copyfile(source, root / folder / file_name)
        else:
            nib.save(nib.load(source), root / folder / file_name)
    meta["training"] = [{"image": f"./imagesTr/{file_name}", "label": f"./labelsTr/{file_name}"}]
    (root / "dataset.json").write_text(json.dumps(meta))
    (case,) = load_msd_dataset(root).cases
    assert case.name == case_name(root / "imagesTr" / file_name) == file_name.rsplit(".nii", 1)[0].removesuffix(".nrrd")


def test_a_missing_file_or_dataset_json_says_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no dataset.json; expected the MSD layout"):
        load_msd_dataset(tmp_path)
    root = write_msd_dataset(tmp_path / "ds", [1, 2])
    (root / "labelsTr" / "case_002.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="case_002.nii.gz, which are missing"):
        load_msd_dataset(root)


def test_selecting_unknown_cases_names_them(tmp_path: Path) -> None:
    dataset = load_msd_dataset(write_msd_dataset(tmp_path / "ds", [1, 2]))
    assert [c.name for c in dataset.select(["case_002", "case_001"])] == ["case_002", "case_001"]
    with pytest.raises(ValueError, match=r"cases \['case_009'\] are not in"):
        dataset.select(["case_009"])


def test_a_label_on_another_grid_than_its_image_is_refused(tmp_path: Path) -> None:
    root = write_msd_dataset(tmp_path / "ds", [1, 2])
    label = nib.load(root / "labelsTr" / "case_002.nii.gz")
    shifted = label.affine.copy()
    shifted[:3, 3] += 12.5  # the same voxels placed 12.5 mm away
    nib.save(nib.Nifti1Image(np.asanyarray(label.dataobj), shifted), root / "labelsTr" / "case_002.nii.gz")
    with pytest.raises(ValueError, match="case_002: the label's affine differs from the image's"):
        load_msd_dataset(root)
