"""The lineage on a card: the training stages that made a model, oldest first."""

from __future__ import annotations

from atriumseg.models.card import ModelCard
from atriumseg.models.lineage import averaged_lineage, lineage_of, stage

OLD_PROVENANCE = {  # a card written before lineages were recorded, as the first built-in model's
    "command": "atriumseg train data -o runs/axial", "epochs": 150, "steps": 7500, "training_seconds": 6003.0,
    "device": "cpu", "config": {"output": "runs/axial", "init": None},
    "split": {"LeftAtrium": {"train": ["a", "b"], "validation": ["c"]},
              "LA2018_LGE": {"train": ["x"], "validation": []}},
}


def test_a_card_without_a_lineage_counts_as_one_stage_told_by_its_provenance() -> None:
    (only,) = lineage_of(ModelCard(provenance=OLD_PROVENANCE))
    assert only == {"run": "runs/axial", "started_from": None, "command": "atriumseg train data -o runs/axial",
                    "epochs": 150, "steps": 7500, "minutes": 100.0, "device": "cpu",
                    "data": {"LeftAtrium": {"train": 2, "validation": 1}, "LA2018_LGE": {"train": 1, "validation": 0}}}
    assert only == stage(OLD_PROVENANCE)


def test_a_stage_records_the_network_it_trained_so_a_widening_shows() -> None:
    config = {**OLD_PROVENANCE["config"], "plane": "axial", "width": 48, "depth": 4, "context": 2, "patch": 128}
    assert stage({**OLD_PROVENANCE, "config": config})["network"] == {"plane": "axial", "width": 48, "depth": 4,
                                                                       "context": 2}
    assert "network" not in stage(OLD_PROVENANCE)  # a run recorded without them says nothing rather than guess


def test_a_recorded_lineage_is_returned_as_recorded_and_an_untrained_card_has_none() -> None:
    first = stage(OLD_PROVENANCE)
    second = {**first, "run": "runs/more", "started_from": "built-in 0.1.0", "steps": 500}
    assert lineage_of(ModelCard(provenance={**OLD_PROVENANCE, "lineage": [first, second]})) == [first, second]
    assert lineage_of(ModelCard()) == []


def test_an_average_keeps_the_shared_stages_and_each_models_own_after_them() -> None:
    first = stage(OLD_PROVENANCE)
    a, b = {**first, "run": "runs/a"}, {**first, "run": "runs/b"}
    data = {"LeftAtrium": {"train": 2, "validation": 1}}
    stories = {"runs/a/last": [first, a], "runs/b/last": [first, b, b]}
    lineage = averaged_lineage("runs/soup", "atriumseg average", stories, data)
    assert lineage == [first, {"run": "runs/soup", "started_from": None, "command": "atriumseg average", "data": data,
                               "averaged": [{"model": "runs/a/last", "stages": [a]},
                                            {"model": "runs/b/last", "stages": [b, b]}]}]
    (only,) = averaged_lineage("runs/soup", "", {"x": [a], "y": [b]}, data)  # nothing shared: each story whole
    assert [m["stages"] for m in only["averaged"]] == [[a], [b]]
