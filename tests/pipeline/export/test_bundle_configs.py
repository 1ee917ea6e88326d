"""The bundle's metadata.json and inference.json, checked against MONAI's specification and the card."""

from __future__ import annotations

from dataclasses import replace

import pytest
from monai.bundle import ConfigParser

from atriumseg.models.card import Architecture, ModelCard, Preprocessing
from atriumseg.models.checkpoint import default_model_path, load_card
from atriumseg.models.ensemble import load_ensemble_card
from atriumseg.pipeline.export.bundle_configs import inference_config, metadata
from atriumseg.pipeline.export.monai_bundle import package_versions

# The mandatory keys of the MONAI Bundle specification (docs/source/mb_specification.rst), plus those the
# 2024 metadata schema (meta_schema_20240725.json) requires; checked here because MONAI's verify_metadata
# downloads that schema from the "schema" URL, and tests never download.
SPEC_KEYS = {"version", "monai_version", "pytorch_version", "numpy_version", "optional_packages_version", "task",
             "description", "authors", "copyright", "network_data_format"}
SCHEMA_KEYS = {"schema", "required_packages_version"}
TENSOR_KEYS = {"type", "format", "modality", "num_channels", "spatial_shape", "dtype", "value_range",
               "is_patch_data", "channel_def"}


@pytest.fixture(scope="module")
def card() -> ModelCard:
    """The built-in ensemble's axial member: a real network's card."""
    return load_card(default_model_path() / "axial")


@pytest.fixture(scope="module")
def meta(card: ModelCard) -> dict:
    return metadata(card, package_versions(), bundle_version="1.2.3")


def test_metadata_has_every_mandatory_key_with_its_type(meta: dict) -> None:
    missing = (SPEC_KEYS | SCHEMA_KEYS) - meta.keys()
    assert not missing, f"metadata lacks {missing}"
    for key in ("version", "monai_version", "pytorch_version", "numpy_version", "task", "description", "authors",
                "copyright", "schema"):
        assert isinstance(meta[key], str) and meta[key], key
    assert "+" not in meta["pytorch_version"]
    assert meta["required_packages_version"] == meta["optional_packages_version"]
    assert {"nibabel", "pytorch-ignite", "fire"} <= meta["required_packages_version"].keys()
    for name, spec in [*meta["network_data_format"]["inputs"].items(), *meta["network_data_format"]["outputs"].items()]:
        assert TENSOR_KEYS <= spec.keys(), f"{name} lacks {TENSOR_KEYS - spec.keys()}"
        assert isinstance(spec["num_channels"], int) and isinstance(spec["is_patch_data"], bool)


def test_metadata_describes_the_network_as_the_card_does(card: ModelCard, meta: dict) -> None:
    image = meta["network_data_format"]["inputs"]["image"]
    pred = meta["network_data_format"]["outputs"]["pred"]
    assert image["num_channels"] == card.architecture.in_channels == 5
    assert image["spatial_shape"] == ["8*n", "8*n"] and pred["spatial_shape"] == image["spatial_shape"]
    assert image["value_range"] == [0, 1] and pred["num_channels"] == 1
    assert image["channel_def"] == {
        "0": "the slice 2 x 1.25 mm inferior of it", "1": "the slice 1 x 1.25 mm inferior of it",
        "2": "the axial slice",
        "3": "the slice 1 x 1.25 mm superior of it", "4": "the slice 2 x 1.25 mm superior of it",
    }
    mask = meta["network_data_format"]["post_processed_outputs"]["pred"]
    assert mask["channel_def"] == {"0": "background", "1": "left_atrium"} and mask["dtype"] == "uint8"


def test_the_built_in_metadata_carries_the_cross_validated_figures_licence_and_both_datasets(card: ModelCard) -> None:
    ensemble = load_ensemble_card(default_model_path()).provenance
    exported = replace(card, provenance={**card.provenance, **ensemble})  # a member's datasets, the ensemble's figures
    meta = metadata(exported, package_versions(), bundle_version="1.2.3")
    assert ModelCard.from_dict(meta["atriumseg_card"]) == exported
    expected = {f"cv_mean_dice_{name}": s["dice_mean"]
                for name, s in ensemble["cross_validation"]["per_dataset"].items()}
    assert meta["eval_metrics"] == expected and min(expected.values()) > 0.85
    assert set(expected) == {"cv_mean_dice_LeftAtrium", "cv_mean_dice_LA2018_LGE"}
    licences = {d["dataset"]: d["licence"] for d in meta["datasets"]}
    assert licences["LeftAtrium"] == "CC-BY-SA 4.0" and "research use" in licences["LA2018_LGE"]
    assert "CC-BY-SA 4.0" in meta["licence"] and "Not a medical device" in meta["licence"]
    assert any("Medical Image Analysis 67" in ref for ref in meta["references"])


def test_eval_metrics_hold_both_the_validation_and_the_cross_validated_dice() -> None:
    record = {"folds": 5, "command": "cv", "per_dataset": {
        "bSSFP": {"cases": 14, "dice_mean": 0.92, "abs_volume_error_mean_pct": 5.0}}}
    provenance = {"validation_dice": {"bSSFP": 0.93, "overall": 0.93}, "cross_validation": record}
    meta = metadata(ModelCard(provenance=provenance), package_versions(), bundle_version="1.0.0")
    assert meta["eval_metrics"] == {"val_mean_dice_bSSFP": 0.93, "val_mean_dice_overall": 0.93,
                                    "cv_mean_dice_bSSFP": 0.92}


def _transform(config: dict, name: str) -> dict:
    return next(t for t in config["preprocessing"]["transforms"] if t["_target_"].endswith(name))


CARDS = [
    ModelCard(architecture=Architecture(3, 32, 4), preprocessing=Preprocessing(
        plane="axial", context=1, spacing=(1.25, 1.25), slice_spacing=1.25, min_slice_size=160)),
    ModelCard(architecture=Architecture(5, 8, 3), preprocessing=Preprocessing(
        plane="sagittal", context=2, spacing=(1.5, 1.0), slice_spacing=0.0, percentiles=(1.0, 99.0))),
    ModelCard(architecture=Architecture(1, 8, 5), preprocessing=Preprocessing(
        orientation="LPS", plane="coronal", context=0, min_slice_size=96)),
]


@pytest.mark.parametrize("card", CARDS, ids=["axial", "sagittal", "coronal-LPS"])
def test_inference_config_follows_the_card(card: ModelCard) -> None:
    pre, config = card.preprocessing, inference_config(card)
    slice_dim = pre.slice_dim
    assert _transform(config, "Orientationd")["axcodes"] == pre.orientation
    assert _transform(config, "Spacingd")["pixdim"] == list(pre.pixdim)
    scale = _transform(config, "ScaleIntensityRangePercentilesd")
    assert (scale["lower"], scale["upper"], scale["clip"]) == (*pre.percentiles, True)
    pad, divisible = _transform(config, "SpatialPadd"), _transform(config, "DivisiblePadd")
    assert pad["spatial_size"][slice_dim] == -1 and divisible["k"][slice_dim] == 1
    assert [v for i, v in enumerate(pad["spatial_size"]) if i != slice_dim] == [pre.min_slice_size] * 2
    assert [v for i, v in enumerate(divisible["k"]) if i != slice_dim] == [card.architecture.divisor] * 2
    stack = _transform(config, "StackNeighboursd")
    assert (stack["slice_dim"], stack["context"]) == (slice_dim, pre.context)
    assert config["inferer"]["_target_"] == "SliceInferer" and config["inferer"]["spatial_dim"] == slice_dim
    assert config["network_def"] == {"_target_": "scripts.unet.UNet", **vars(card.architecture)}
    thresholds = [t for t in config["postprocessing"]["transforms"] if t["_target_"] == "AsDiscreted"]
    assert thresholds[0]["threshold"] == card.postprocessing.threshold


def test_model_zoo_ids_are_overridable_from_the_command_line(card: ModelCard) -> None:
    parser = ConfigParser(inference_config(card))
    for key in ("bundle_root", "device", "dataset_dir", "output_dir", "network_def", "inferer", "preprocessing",
                "postprocessing", "run"):
        assert key in parser, key
    parser.update({"bundle_root": "/b", "dataset_dir": "/nowhere", "output_dir": "/out"})
    assert parser.get_parsed_content("ckpt_path") == "/b/models/model.pt"
    assert parser.get_parsed_content("datalist") == []
    save = next(t for t in parser["postprocessing"]["transforms"] if t["_target_"] == "SaveImaged")
    assert save["output_dir"] == "@output_dir"
