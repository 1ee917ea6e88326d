"""``atriumseg info`` in words: the design, the data, the cross-validated figures and one line per stage."""

from __future__ import annotations

from atriumseg._version import __version__
from atriumseg.models.card import ModelCard, Preprocessing
from atriumseg.models.checkpoint import default_model_path, load_card
from atriumseg.models.describe import describe, describe_ensemble
from atriumseg.models.ensemble import EnsembleCard, load_ensemble_card

STAGES = [
    {"run": "runs/axial", "started_from": None, "epochs": 123, "steps": 6150, "minutes": 100.1, "device": "cpu",
     "data": {"LeftAtrium": {"train": 11, "validation": 3}, "LA2018_LGE": {"train": 64, "validation": 16}}},
    {"run": "runs/more", "started_from": "built-in 0.1.0", "epochs": 40, "steps": 2000, "minutes": 12.5,
     "device": "cuda:0", "data": {"LeftAtrium": {"train": 14, "validation": 0}},
     "network": {"plane": "axial", "width": 48, "depth": 4, "context": 2}},
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
    lines = text.splitlines()
    start = lines.index("  lineage (2 stage(s), oldest first):")
    assert lines[start + 1:start + 3] == [
        "    1. run runs/axial, from scratch, 123 epochs, 6150 steps, 100.1 min on cpu; data "
        "(training+validation cases): LeftAtrium 11+3, LA2018_LGE 64+16",
        "    2. run runs/more, from built-in 0.1.0, 40 epochs, 2000 steps, 12.5 min on cuda:0 (axial, width 48, depth "
        "4, context 2); data (training+validation cases): LeftAtrium 14+0",
    ]
    assert sum(line.lstrip().startswith(("1. run", "2. run", "3. run")) for line in lines) == 2


def test_an_averaging_stage_lists_each_models_own_stages_under_it() -> None:
    soup = {"run": "runs/soup", "data": {"LeftAtrium": {"train": 14, "validation": 0}},
            "averaged": [{"model": "runs/a/last", "stages": [STAGES[1]]}, {"model": "runs/b/last", "stages": []}]}
    lines = describe(ModelCard(provenance={"lineage": [STAGES[0], soup]})).splitlines()
    start = lines.index("    2. run runs/soup, the mean of the weights of 2 models; data (training+validation cases): "
                        "LeftAtrium 14+0")
    assert lines[start + 1:start + 4] == [
        "       runs/a/last: 1 stage(s) of its own after stage 1",
        "          1. run runs/more, from built-in 0.1.0, 40 epochs, 2000 steps, 12.5 min on cuda:0 (axial, width 48, "
        "depth 4, context 2); data (training+validation cases): LeftAtrium 14+0",
        "       runs/b/last: 0 stage(s) of its own after stage 1",
    ]


def test_cross_validated_figures_per_protocol_with_volume_error() -> None:
    lines = describe(ModelCard(provenance={"cross_validation": CROSS_VALIDATION})).splitlines()
    assert ("  expected accuracy, cross-validated (5 fold models of this model's recipe, each case scored by the fold "
            "model that did not train on it):") in lines
    assert ("    LeftAtrium: 14 cases, Dice mean 0.9213, worst 0.8710, mean absolute volume error 4.8%") in lines
    assert "    LA2018_LGE: 80 cases, Dice mean 0.9105, mean absolute volume error 6.2%" in lines


def test_the_built_in_model_tells_its_members_lineage_and_cross_validated_figures() -> None:
    folder = default_model_path()
    ensemble = load_ensemble_card(folder)
    lines = describe_ensemble(ensemble, {name: load_card(folder / name) for name in ensemble.members}).splitlines()
    assert lines[0] == (f"atriumseg ensemble of 2 models (made by atriumseg {__version__}): 'axial' locates the "
                        "atrium, every member segments it")
    assert lines.count("  atriumseg model (made by atriumseg 0.10.0)") == 2  # the code that averaged each member
    assert "    LeftAtrium: 14 cases, Dice mean 0.9202, worst 0.8667, mean absolute volume error 6.7%" in lines
    assert "    LA2018_LGE: 80 cases, Dice mean 0.9178, worst 0.7682, mean absolute volume error 5.9%" in lines
    text = "\n".join(lines)
    for plane in ("axial", "coronal"):
        assert f"slices: {plane} in RAS, 1.25 x 1.25 mm in-plane, 1.25 mm apart" in text
        assert f"8. run runs/ship_soup_{plane}, the mean of the weights of 2 models" in text
        for run in ("w21", "p160"):
            assert f"candidates/ship_{run}_{plane}: 1 stage(s) of its own after stage 7" in text
        assert f"9. run runs/ship_wdark_{plane}, the mean of the weights of 2 models" in text
        assert f"candidates/builtin-0.9.0/{plane}: 0 stage(s) of its own after stage 8" in text
        assert f"candidates/ship_sdark_{plane}: 1 stage(s) of its own after stage 8" in text
    assert text.count("2D U-Net, width 32, depth 4 (1,926,177 parameters), 5 input channel(s)") == 2
    assert text.count("1. run runs/axial, from scratch") == 2  # built-in 0.1.0, the stage both members share
    assert text.count("from built-in 0.1.0") == 2 and text.count("from candidates/builtin-0.2.0") == 2
    assert text.count("from built-in 0.4.0") == 2 and text.count("from built-in 0.5.0") == 2
    assert text.count("from candidates/builtin-0.6.0") == 2 and text.count("from built-in 0.7.0") == 2
    assert text.count("from built-in 0.8.0") == 4  # each member's two continuations
    assert text.count("from candidates/builtin-0.9.0") == 2  # each member's darkened continuation
    # stages 2 to 9, 0.9.0's two continuations and the darkened one, per member
    assert text.count("LeftAtrium 14+0, LA2018_LGE 80+0") == 22
    assert text.count("capped first at the upper one of the central 0.5 of each axis") == 2
    assert "set after training" not in text  # 0.7.0 had the cap set on its cards; stage 7 trained with it


def test_a_hand_made_card_says_only_what_it_knows() -> None:
    text = describe(ModelCard())
    assert "lineage" not in text and "cross-validated" not in text and "trained on" not in text
    assert "mask: probability > 0.5, largest component" in text


def test_a_cap_set_after_training_is_described_and_said_to_be_so() -> None:
    note = {"field": "preprocessing.centre_clip", "from": 0.0, "to": 0.5, "package_version": "0.6.1"}
    card = ModelCard(preprocessing=Preprocessing(centre_clip=0.5), provenance={"set_after_training": [note]})
    lines = describe(card).splitlines()
    assert lines[2].endswith("intensities scaled between percentiles 0.5 and 99.5, capped first at the upper one of "
                             "the central 0.5 of each axis")
    assert "  set after training: preprocessing.centre_clip 0 -> 0.5 (atriumseg 0.6.1)" in lines
    assert "capped" not in describe(ModelCard(preprocessing=Preprocessing(centre_clip=0.0)))


def test_an_ensemble_tells_its_own_validation_figures_and_licence() -> None:
    provenance = {"validation_dice": {"LeftAtrium": 0.9213, "LA2018_LGE": 0.9105, "overall": 0.9159},
                  "cross_validation": CROSS_VALIDATION, "licence": "CC-BY-SA 4.0, research use only"}
    lines = describe_ensemble(EnsembleCard(("axial", "coronal"), provenance=provenance),
                              {"axial": ModelCard(), "coronal": ModelCard()}).splitlines()
    assert ("  validation Dice of the ensemble (the members' held-out cases): LeftAtrium 0.9213, LA2018_LGE 0.9105, "
            "overall 0.9159") in lines
    assert "    LA2018_LGE: 80 cases, Dice mean 0.9105, mean absolute volume error 6.2%" in lines
    assert "  licence: CC-BY-SA 4.0, research use only" in lines
    assert lines.index("  licence: CC-BY-SA 4.0, research use only") < lines.index("member 'axial':")
