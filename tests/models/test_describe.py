"""``atriumseg info`` in words: the design, the data, the cross-validated figures and one line per stage."""

from __future__ import annotations

from atriumseg.models.card import ModelCard
from atriumseg.models.checkpoint import default_model_path, load_card
from atriumseg.models.describe import describe, describe_ensemble

STAGES = [
    {"run": "runs/axial", "started_from": None, "epochs": 123, "steps": 6150, "minutes": 100.1, "device": "cpu",
     "data": {"LeftAtrium": {"train": 11, "validation": 3}, "LA2018_LGE": {"train": 64, "validation": 16}}},
    {"run": "runs/more", "started_from": "built-in 0.1.0", "epochs": 40, "steps": 2000, "minutes": 12.5,
     "device": "cuda:0", "data": {"LeftAtrium": {"train": 14, "validation": 0}}},
]
CROSS_VALIDATION = {
    "folds": 5, "command": "atriumseg train ... --folds 5 --fold K; atriumseg evaluate ...",
    "per_dataset": {
        "LeftAtrium": {"cases": 14, "dice_mean": 0.9213, "dice_worst": 0.871, "abs_volume_error_mean_pct": 4.83},
        "LA2018_LGE": {"cases": 80, "dice_mean": 0.9105, "abs_volume_error_mean_pct": 6.2},
    },
}


def test_the_lineage_is_one_line_per_stage_oldest_first() -> None:
    text = describe(ModelCard(provenance={"lineage": STAGES}))
    assert "lineage (2 training stage(s), oldest first):" in text
    assert ("    1. run runs/axial, from scratch, 123 epochs, 6150 steps, 100.1 min on cpu; data "
            "(training+validation cases): LeftAtrium 11+3, LA2018_LGE 64+16") in text.splitlines()
    assert ("    2. run runs/more, from built-in 0.1.0, 40 epochs, 2000 steps, 12.5 min on cuda:0; data "
            "(training+validation cases): LeftAtrium 14+0") in text.splitlines()


def test_cross_validated_figures_per_protocol_with_volume_error() -> None:
    lines = describe(ModelCard(provenance={"cross_validation": CROSS_VALIDATION})).splitlines()
    assert ("  expected accuracy, cross-validated (5 fold models of this model's recipe, each case scored by the fold "
            "model that did not train on it):") in lines
    assert ("    LeftAtrium: 14 cases, Dice mean 0.9213, worst 0.8710, mean absolute volume error 4.8%") in lines
    assert "    LA2018_LGE: 80 cases, Dice mean 0.9105, mean absolute volume error 6.2%" in lines


def test_the_built_in_model_tells_its_design_data_and_stage() -> None:
    text = describe(load_card(default_model_path()))
    assert ("2D U-Net, width 32, depth 4 (1,925,601 parameters), 3 input channel(s) (1 neighbour slice(s) each side)"
            in text)
    assert "axial in RAS, 1.25 x 1.25 mm in-plane, 1.25 mm apart" in text
    assert "trained on LeftAtrium (11 training / 3 validation cases, validation Dice 0.9046)" in text
    assert "    LeftAtrium: 14 cases, Dice mean 0.9014, worst 0.8430, mean absolute volume error 9.0%" in text
    assert "    LA2018_LGE: 80 cases, Dice mean 0.8871, worst 0.0949, mean absolute volume error 8.4%" in text
    assert "1. run runs/axial, from scratch" in text and "LeftAtrium 11+3, LA2018_LGE 64+16" in text


def test_a_hand_made_card_says_only_what_it_knows() -> None:
    text = describe(ModelCard())
    assert "lineage" not in text and "cross-validated" not in text and "trained on" not in text
    assert "mask: probability > 0.5, largest component" in text


def test_an_ensemble_tells_its_own_validation_figures_and_licence() -> None:
    from atriumseg.models.ensemble import EnsembleCard

    provenance = {"validation_dice": {"LeftAtrium": 0.9213, "LA2018_LGE": 0.9105, "overall": 0.9159},
                  "cross_validation": CROSS_VALIDATION, "licence": "CC-BY-SA 4.0, research use only"}
    lines = describe_ensemble(EnsembleCard(("axial", "coronal"), provenance=provenance),
                              {"axial": ModelCard(), "coronal": ModelCard()}).splitlines()
    assert ("  validation Dice of the ensemble (the members' held-out cases): LeftAtrium 0.9213, LA2018_LGE 0.9105, "
            "overall 0.9159") in lines
    assert "    LA2018_LGE: 80 cases, Dice mean 0.9105, mean absolute volume error 6.2%" in lines
    assert "  licence: CC-BY-SA 4.0, research use only" in lines
    assert lines.index("  licence: CC-BY-SA 4.0, research use only") < lines.index("member 'axial':")
