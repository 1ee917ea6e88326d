"""The built-in model (a learned ensemble of an axial and a coronal network): it ships inside the package,
describes how it was made and how accurate it is expected to be, and segments the bundled held-out sample well."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from atriumseg.demo import run_demo, sample_paths
from atriumseg.models.card import BUILT_IN
from atriumseg.models.checkpoint import default_model_path, load_model
from atriumseg.models.ensemble import load_ensemble_card
from atriumseg.models.lineage import lineage_of
from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.pipeline.training.validation import cross_validation_record, read_metrics_csv

MIN_SAMPLE_DICE = 0.90
CV_FOLDER = Path(__file__).parents[2] / "cv" / "wdark"  # the shipped recipe's out-of-fold CSVs, in the repository


def test_built_in_model_segments_the_bundled_sample(tmp_path: Path) -> None:
    result = run_demo(tmp_path, Segmenter.from_path(None, device="cpu"))
    assert result.dice >= MIN_SAMPLE_DICE, f"Dice {result.dice:.4f} < {MIN_SAMPLE_DICE} on the bundled sample"
    assert abs(result.volume_ml - result.true_volume_ml) < 0.15 * result.true_volume_ml


def test_built_in_model_is_an_axial_and_a_coronal_member_with_the_cross_validated_figures() -> None:
    ensemble = load_ensemble_card(default_model_path())
    assert ensemble.members == ("axial", "coronal")
    prov = ensemble.provenance
    record = prov["cross_validation"]
    assert record["folds"] == 5 and "--folds 5" in record["command"]
    cases = {name: s["cases"] for name, s in record["per_dataset"].items()}
    assert cases == {"LeftAtrium": 14, "LA2018_LGE": 80}  # every labelled case but la_023, each scored out of fold
    assert record["command"].startswith("python tools/cross_validate.py runs/cv_wdark_fold0") and "-o cv/wdark" in \
        record["command"]
    committed = cross_validation_record({name: read_metrics_csv(CV_FOLDER / f"{name}.csv") for name in cases}, 5, "")
    assert record["per_dataset"] == committed["per_dataset"]  # the figures are the committed out-of-fold CSVs'
    assert "CC-BY-SA 4.0" in prov["licence"] and "Xiong et al." in prov["licence"]


@pytest.mark.parametrize("member", ["axial", "coronal"])
def test_each_member_trained_on_every_labelled_case_but_the_held_out_sample(member: str) -> None:
    _, card = load_model(default_model_path() / member)
    prov = card.provenance
    assert [d["dataset"] for d in prov["data"]] == ["LeftAtrium", "LA2018_LGE"]
    split = prov["split"]
    assert split["LeftAtrium"]["excluded"] == ["la_023"]
    assert {name: (len(part["train"]), part["validation"]) for name, part in split.items()} == {
        "LeftAtrium": (14, []), "LA2018_LGE": (80, [])}
    assert prov["command"].startswith("atriumseg average") and prov["averaged"] == [
        f"candidates/builtin-0.9.0/{member}", f"candidates/ship_sdark_{member}"]
    *_, soup, averaged = lineage_of(card)
    (w21,), (p160,) = (model["stages"] for model in soup["averaged"])
    (), (darkened,) = (model["stages"] for model in averaged["averaged"])  # 0.9.0's member, and its continuation
    for stage in (w21, p160, darkened):  # trained with the cap it segments with, and the wider gamma the folds did
        assert "--centre-clip 0.5" in stage["command"] and "--gamma 0.35 1.6" in stage["command"]
        assert f"--plane {member}" in stage["command"]
    assert "--weights 2 1" in w21["command"] and "--patch 160" in p160["command"]
    assert "--init candidates/builtin-0.9.0" in darkened["command"] and "--darken 0.25" in darkened["command"]


@pytest.mark.parametrize("member", ["axial", "coronal"])
def test_each_member_is_the_built_in_design_in_its_plane_continued_from_the_earlier_built_ins(member: str) -> None:
    _, card = load_model(default_model_path() / member)
    assert card.design == replace(BUILT_IN, preprocessing=replace(BUILT_IN.preprocessing, plane=member))
    first, *continued, soup, averaged = lineage_of(card)
    assert first["started_from"] is None
    assert [stage["started_from"] for stage in continued] == [
        "built-in 0.1.0", "candidates/builtin-0.2.0", "built-in 0.4.0", "built-in 0.5.0", "candidates/builtin-0.6.0",
        "built-in 0.7.0"]
    own = [stage for model in soup["averaged"] for stage in model["stages"]]
    assert [stage["started_from"] for stage in own] == ["built-in 0.8.0", "built-in 0.8.0"]
    assert [stage["steps"] for stage in own] == [2000, 2000]
    darkened = [stage for model in averaged["averaged"] for stage in model["stages"]]
    assert [(stage["started_from"], stage["steps"]) for stage in darkened] == [("candidates/builtin-0.9.0", 1000)]
    every_case = {"LeftAtrium": {"train": 14, "validation": 0}, "LA2018_LGE": {"train": 80, "validation": 0}}
    for stage in [*continued, *own]:
        assert stage["minutes"] >= 20
    for stage in [*continued, *own, *darkened]:
        assert stage["data"] == every_case
    assert soup["data"] == averaged["data"] == every_case


def test_the_bundled_sample_is_one_atrium_on_its_image_grid() -> None:
    image, label = (nib.load(path) for path in sample_paths())
    assert image.shape == label.shape and np.allclose(image.affine, label.affine)
    mask = np.asanyarray(label.dataobj) > 0
    millilitres = mask.sum() * abs(np.linalg.det(label.affine[:3, :3])) / 1000.0
    assert 20.0 < millilitres < 200.0, f"{millilitres:.1f} mL is not a left atrium"
    assert ndimage.label(mask)[1] == 1
