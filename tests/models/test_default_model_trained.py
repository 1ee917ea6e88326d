"""The built-in model (a learned model): it ships inside the package, describes how it was made, and
segments the bundled held-out sample well."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from atriumseg.demo import run_demo, sample_paths
from atriumseg.models.card import BUILT_IN
from atriumseg.models.checkpoint import default_model_path, load_model
from atriumseg.models.lineage import lineage_of
from atriumseg.pipeline.inference.segmenter import Segmenter

MIN_SAMPLE_DICE = 0.90


def test_built_in_model_segments_the_bundled_sample(tmp_path: Path) -> None:
    result = run_demo(tmp_path, Segmenter.from_path(None, device="cpu"))
    assert result.dice >= MIN_SAMPLE_DICE, f"Dice {result.dice:.4f} < {MIN_SAMPLE_DICE} on the bundled sample"
    assert abs(result.volume_ml - result.true_volume_ml) < 0.15 * result.true_volume_ml


def test_built_in_model_card_tells_its_story() -> None:
    _, card = load_model(default_model_path())
    prov = card.provenance
    assert [d["dataset"] for d in prov["data"]] == ["LeftAtrium", "LA2018_LGE"]
    split = prov["split"]
    assert "la_023" in split["LeftAtrium"]["excluded"]
    for name, part in split.items():
        assert not set(part["train"]) & set(part["validation"]), name
        assert "la_023" not in part["train"] + part["validation"]
        assert set(prov["validation"][name]) == set(part["validation"])
    assert set(prov["validation_dice"]) == {"LeftAtrium", "LA2018_LGE", "overall"}
    assert prov["command"].startswith("atriumseg train")
    assert "CC-BY-SA 4.0" in prov["licence"] and "Xiong et al." in prov["licence"]


def test_the_built_in_model_is_the_built_in_design_with_its_recorded_stage() -> None:
    _, card = load_model(default_model_path())
    assert card.design == BUILT_IN
    (only,) = lineage_of(card)
    assert only["started_from"] is None and only["steps"] == card.provenance["steps"] > 0
    assert only["data"] == {name: {"train": len(part["train"]), "validation": len(part["validation"])}
                            for name, part in card.provenance["split"].items()}


def test_the_bundled_sample_is_one_atrium_on_its_image_grid() -> None:
    image, label = (nib.load(path) for path in sample_paths())
    assert image.shape == label.shape and np.allclose(image.affine, label.affine)
    mask = np.asanyarray(label.dataobj) > 0
    millilitres = mask.sum() * abs(np.linalg.det(label.affine[:3, :3])) / 1000.0
    assert 20.0 < millilitres < 200.0, f"{millilitres:.1f} mL is not a left atrium"
    assert ndimage.label(mask)[1] == 1
