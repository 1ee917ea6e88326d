"""The model card: each typed part checks its own values, the design's parts agree, the built-in design is
written once and is the shipped axial member's, and a card survives its JSON form."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from atriumseg.models.card import (
    BUILT_IN,
    FORMAT_VERSION,
    Architecture,
    CardError,
    ModelCard,
    ModelDesign,
    Postprocessing,
    Preprocessing,
    training_data,
)
from atriumseg.models.checkpoint import default_model_path, load_card
from atriumseg.models.ensemble import EnsembleCard

# (part, a bad value for one field, a phrase the refusal must hold)
BAD_PARTS = [
    (Architecture, {"width": 10**7}, "architecture.width must be an integer in [1, 512]"),
    (Architecture, {"depth": 1}, "architecture.depth must be an integer in [2, 8]"),
    (Architecture, {"in_channels": 2.5}, "architecture.in_channels must be an integer"),
    (Architecture, {"width": True}, "architecture.width must be an integer"),
    (Architecture, {"width": 512, "depth": 8}, "gives 65536 channels at the bottleneck"),
    (Preprocessing, {"plane": "oblique"}, "plane must be one of"),
    (Preprocessing, {"orientation": "RRS"}, "preprocessing.orientation 'RRS' is not three axis codes"),
    (Preprocessing, {"spacing": (1.0,)}, "preprocessing.spacing must hold 2 numbers"),
    (Preprocessing, {"spacing": "1.0"}, "preprocessing.spacing must hold 2 numbers"),
    (Preprocessing, {"spacing": (1.0, 0.0)}, "preprocessing.spacing must be a number in [0.05, 20.0]"),
    (Preprocessing, {"slice_spacing": 99.0}, "preprocessing.slice_spacing must be a number in [0.05, 20.0]"),
    (Preprocessing, {"percentiles": (99.5, 0.5)}, "low < high"),
    (Preprocessing, {"percentiles": (-1.0, 50.0)}, "preprocessing.percentiles must be a number in [0, 100]"),
    (Preprocessing, {"centre_clip": 1.5}, "preprocessing.centre_clip must be a number in [0, 1]"),
    (Preprocessing, {"context": -1}, "preprocessing.context must be an integer in [0, 15]"),
    (Preprocessing, {"min_slice_size": 4096}, "preprocessing.min_slice_size must be an integer in [0, 1024]"),
    (Postprocessing, {"threshold": 1.0}, "threshold must be a number in (0, 1)"),
    (Postprocessing, {"threshold": "0.5"}, "threshold must be a number in (0, 1)"),
    (Postprocessing, {"largest_component": "yes"}, "largest_component must be true or false"),
    (Postprocessing, {"fusion": "max"}, "postprocessing.fusion must be one of mean, logit_mean"),
    (Postprocessing, {"fusion": ["mean"]}, "postprocessing.fusion must be one of mean, logit_mean"),
    (Postprocessing, {"fusion": "logit_mean", "threshold": 0.003}, "threshold must be in (0.005, 0.995) with fusion"),
    (Postprocessing, {"fusion": "logit_mean", "threshold": 0.999}, "threshold must be in (0.005, 0.995) with fusion"),
]


@pytest.mark.parametrize(("part", "change", "phrase"), BAD_PARTS)
def test_each_part_refuses_its_own_bad_values_by_name(part: type, change: dict, phrase: str) -> None:
    with pytest.raises(CardError) as caught:
        part(**change)
    assert phrase in str(caught.value)


@pytest.mark.parametrize(("part", "change", "phrase"), BAD_PARTS)
def test_a_card_file_with_a_bad_value_is_refused_with_the_same_reason(part: type, change: dict, phrase: str) -> None:
    data = json.loads(json.dumps(ModelCard().to_dict()))
    data[part.__name__.lower()].update(change)
    with pytest.raises(CardError) as caught:
        ModelCard.from_dict(data)
    assert phrase in str(caught.value) and "malformed" not in str(caught.value)


def test_the_built_in_design_is_the_shipped_axial_member_and_the_parts_defaults() -> None:
    shipped = load_card(default_model_path() / "axial")
    assert shipped.design == BUILT_IN == ModelDesign() == ModelCard().design
    arch, pre, post = BUILT_IN.architecture, BUILT_IN.preprocessing, BUILT_IN.postprocessing
    assert (arch.in_channels, arch.width, arch.depth) == (5, 32, 4)  # what every default trains and reads
    assert (pre.orientation, pre.plane, pre.spacing, pre.slice_spacing, pre.context, pre.min_slice_size,
            pre.centre_clip) == ("RAS", "axial", (1.25, 1.25), 1.25, 2, 160, 0.5)
    assert (post.threshold, post.largest_component, post.fusion) == (0.5, True, "mean")


@pytest.mark.parametrize("member", ["axial", "coronal"])
def test_the_built_in_members_card_json_loads_unchanged_and_writes_back_the_same_json(member: str) -> None:
    data = json.loads((default_model_path() / member / "card.json").read_text())
    assert data["format_version"] == FORMAT_VERSION == 1
    assert json.loads(json.dumps(ModelCard.from_dict(data).to_dict())) == data


def test_the_built_in_ensemble_card_json_loads_unchanged_and_writes_back_the_same_json() -> None:
    data = json.loads((default_model_path() / "card.json").read_text())
    assert data["format_version"] == FORMAT_VERSION
    assert json.loads(json.dumps(EnsembleCard.from_dict(data).to_dict())) == data


def test_channels_must_match_the_context() -> None:
    with pytest.raises(CardError, match=r"in_channels=1 does not match context=2 \(expected 5 channels\)"):
        ModelDesign(Architecture(in_channels=1), Preprocessing(context=2))
    assert ModelDesign(Architecture(in_channels=5), Preprocessing(context=2)).preprocessing.channels == 5


def test_unknown_format_version_is_refused_with_what_to_do() -> None:
    data = ModelCard().to_dict()
    data["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(CardError, match="format version 2 is not supported.*upgrade atriumseg"):
        ModelCard.from_dict(data)


@pytest.mark.parametrize("broken", [{"architecture": None}, {"preprocessing": {"colour": "red"}}, {}])
def test_malformed_cards_say_so(broken: dict) -> None:
    data = {**ModelCard().to_dict(), **broken}
    if not broken:
        del data["postprocessing"]
    with pytest.raises(CardError, match="malformed model card"):
        ModelCard.from_dict(data)


@pytest.mark.parametrize("content", [b"\xff\xfe{not utf-8", b"[" * 100_000 + b"]" * 100_000, b'{"architecture": '])
def test_a_card_file_that_cannot_be_parsed_is_a_card_error_naming_it(tmp_path, content: bytes) -> None:
    (tmp_path / "card.json").write_bytes(content)
    with pytest.raises(CardError, match=f"cannot read model card {tmp_path / 'card.json'}"):
        ModelCard.load(tmp_path / "card.json")


@pytest.mark.parametrize("data, names", [
    ({"dataset": "LeftAtrium", "licence": "CC-BY-SA 4.0"}, ["LeftAtrium"]),  # a card before multi-dataset training
    ([{"dataset": "LeftAtrium"}, "junk", {"dataset": "LA2018_LGE"}], ["LeftAtrium", "LA2018_LGE"]),
    (None, []),
])
def test_training_data_reads_every_form_of_provenance(data: object, names: list[str]) -> None:
    assert [d["dataset"] for d in training_data({"data": data})] == names


def test_a_card_is_its_design_plus_provenance(tmp_path) -> None:
    design = ModelDesign(Architecture(in_channels=1, width=8, depth=3), Preprocessing(context=0, plane="coronal"),
                         Postprocessing(threshold=0.4))
    card = ModelCard.of(design, package_version="9.9", provenance={"epochs": 3})
    assert card.design == design and card.provenance == {"epochs": 3}
    card.save(tmp_path / "card.json")
    assert ModelCard.load(tmp_path / "card.json") == card
    assert replace(card, provenance={}).design == design


def test_json_lists_become_tuples() -> None:
    pre = Preprocessing(spacing=[1.0, 0.8], percentiles=[1, 99])  # type: ignore[arg-type]
    assert pre.spacing == (1.0, 0.8) and pre.percentiles == (1, 99)
    assert hash(pre) == hash(Preprocessing(spacing=(1.0, 0.8), percentiles=(1, 99)))


@pytest.mark.parametrize(
    ("orientation", "plane", "slice_dim"),
    [("RAS", "sagittal", 0), ("RAS", "coronal", 1), ("LPS", "axial", 2), ("ASL", "sagittal", 2), ("SLA", "axial", 0)],
)
def test_slice_axis_follows_the_anatomical_plane(orientation: str, plane: str, slice_dim: int) -> None:
    assert Preprocessing(orientation=orientation, plane=plane).slice_dim == slice_dim


def test_pixdim_puts_the_slice_spacing_on_the_slice_axis() -> None:
    pre = Preprocessing(orientation="RAS", plane="coronal", spacing=(1.0, 0.8), slice_spacing=2.5)
    assert np.allclose(pre.pixdim, (1.0, 2.5, 0.8))
    assert np.allclose(replace(pre, slice_spacing=0.0).pixdim, (1.0, 0.0, 0.8))


def test_lower_case_axis_codes_mean_the_same_frame() -> None:
    pre = Preprocessing(orientation="lps", plane="coronal")
    assert pre.orientation == "LPS" and pre.slice_dim == 1 and pre == Preprocessing(orientation="LPS", plane="coronal")


def test_a_card_written_before_slice_spacing_padding_and_the_cap_keeps_its_old_meaning() -> None:
    data = json.loads((default_model_path() / "axial" / "card.json").read_text())
    for field in ("slice_spacing", "min_slice_size", "centre_clip"):
        del data["preprocessing"][field]
    old = ModelCard.from_dict(data).preprocessing
    assert old.slice_spacing == 0.0 and old.min_slice_size == 0 and old.centre_clip == 0.0  # not 1.25 mm, 160, 0.5


def test_a_card_written_before_fusion_rules_averages_its_members_and_the_mean_is_written_as_before() -> None:
    """Cards without ``fusion`` (the built-in ones among them) mean the mean, and a card of the mean is written
    without the field, so atriumseg 0.8.0 and earlier still read it; another rule is written."""
    for card_file, read in ((default_model_path() / "card.json", EnsembleCard.from_dict),
                            (default_model_path() / "axial" / "card.json", ModelCard.from_dict)):
        data = json.loads(card_file.read_text())
        assert "fusion" not in data["postprocessing"]
        card = read(data)
        assert card.postprocessing.fusion == "mean" and "fusion" not in card.to_dict()["postprocessing"]
        logit = replace(card, postprocessing=replace(card.postprocessing, fusion="logit_mean"))
        assert read(json.loads(json.dumps(logit.to_dict()))).postprocessing.fusion == "logit_mean"
