"""Validation figures: each dataset's mean Dice, an overall figure in which each dataset counts once, and the
cross-validated figures a card carries."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import STANDIN_FOLDS, standin_folds, tiny_config

from atriumseg.models.card import ModelCard, Postprocessing
from atriumseg.models.checkpoint import load_card
from atriumseg.models.ensemble import assemble_ensemble
from atriumseg.pipeline.analysis.metrics import CaseMetrics
from atriumseg.pipeline.evaluation.evaluate import evaluate
from atriumseg.pipeline.evaluation.table import write_metrics_csv
from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.pipeline.training.dataset import load_msd_dataset
from atriumseg.pipeline.training.trainer import train
from atriumseg.pipeline.training.validation import (
    TTA_MARKER,
    cross_validated_datasets,
    cross_validation_record,
    fold_cards,
    fold_segmenters,
    mark_scored_with_tta,
    out_of_fold,
    read_metrics_csv,
    scored_with_tta,
    validation_summary,
)


def test_overall_is_the_mean_of_the_dataset_means_not_of_all_cases() -> None:
    per_dataset = {
        "bSSFP": {"a": {"dice": 0.9}, "b": {"dice": 0.8}, "c": {"dice": 0.7}},
        "LGE": {"x": {"dice": 0.5}},
        "empty": {},
    }
    summary = validation_summary(per_dataset)
    assert summary == pytest.approx({"bSSFP": 0.8, "LGE": 0.5, "overall": 0.65})


def test_no_validation_gives_no_figures() -> None:
    assert validation_summary({}) == {} and validation_summary({"bSSFP": {}}) == {}


def _metrics(dice: float, error: float) -> CaseMetrics:
    return CaseMetrics(dice=dice, hd95_mm=2.0, asd_mm=0.5, predicted_ml=100 + error, true_ml=100.0,
                       volume_error_pct=error, abs_volume_error_pct=abs(error))


def test_cross_validated_figures_summarise_each_protocols_out_of_fold_cases(tmp_path: Path) -> None:
    bssfp = [("la_003", _metrics(0.92, -4.0)), ("la_004", _metrics(0.88, 6.0))]
    write_metrics_csv(bssfp, tmp_path / "bssfp.csv")
    record = cross_validation_record({"LeftAtrium": read_metrics_csv(tmp_path / "bssfp.csv"),
                                      "LGE": [("x", _metrics(0.9, 3.0))]}, folds=5, command="made so")
    assert record["folds"] == 5 and record["command"] == "made so"
    figures = record["per_dataset"]["LeftAtrium"]
    assert figures["cases"] == 2 and figures["worst_case"] == "la_004"
    assert figures["dice_mean"] == pytest.approx(0.90) and figures["abs_volume_error_mean_pct"] == pytest.approx(5.0)
    assert figures["volume_error_mean_pct"] == pytest.approx(1.0)
    assert record["per_dataset"]["LGE"]["dice_mean"] == pytest.approx(0.9)
    with pytest.raises(ValueError, match="2 or more folds"):
        cross_validation_record({"LGE": [("x", _metrics(0.9, 3.0))]}, folds=1, command="")


def test_a_cross_validation_folder_holds_its_whole_csvs_not_progress_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no DATASET.csv files"):
        cross_validated_datasets(tmp_path)
    for name in ("LGE.csv", "bSSFP.csv", "MSD.partial.csv", "notes.txt"):
        (tmp_path / name).write_text("case,dice\n")
    assert cross_validated_datasets(tmp_path) == ["LGE", "bSSFP"]


def _card(folder: Path, folds: int | None, fold: int | None, train: list[str], validation: list[str]) -> Path:
    """A fold model's card alone: which fold of which K, and the cases it trained and validated on."""
    config = {} if folds is None else {"folds": folds, "fold": fold}
    folder.mkdir(parents=True)
    ModelCard(provenance={"config": config, "split": {"A": {"train": train, "validation": validation}}}).save(
        folder / "card.json")
    return folder


def test_fold_cards_accept_one_split_and_name_the_folders_that_are_not(tmp_path: Path) -> None:
    fold0 = _card(tmp_path / "f0", 2, 0, ["c", "d"], ["a", "b"])
    fold1 = _card(tmp_path / "f1", 2, 1, ["a", "b"], ["c", "d"])
    cards, folds, k = fold_cards([fold1, fold0])
    assert ([folder for folder, _ in cards], folds, k) == ([fold1, fold0], [0, 1], 2)
    assert fold_cards([fold1], partial=True)[1:] == ([1], 2)
    with pytest.raises(ValueError, match=r"cover folds \[1\]; 2-fold cross-validation needs 0..1 once each"):
        fold_cards([fold1])
    with pytest.raises(ValueError, match=r"cover folds \[0, 0\]; .* at most once each \(.*f0: fold 0 of 2, .*f0: fold"):
        fold_cards([fold0, fold0], partial=True)
    other_k = _card(tmp_path / "k3", 3, 1, ["a", "b"], ["c", "d"])
    with pytest.raises(ValueError, match=r"got K = \[2, 3\] \(.*f0: fold 0 of 2, .*k3: fold 1 of 3\)"):
        fold_cards([fold0, other_k])
    with pytest.raises(ValueError, match=r"got K = \[0\] \(.*plain: fold None of 0\)"):
        fold_cards([_card(tmp_path / "plain", None, None, ["a"], [])])
    with pytest.raises(ValueError, match=r"got K = \[2\] \(.*nofold: fold None of 2\)"):
        fold_cards([fold0, _card(tmp_path / "nofold", 2, None, ["a"], ["c"])], partial=True)
    other_split = _card(tmp_path / "other", 2, 1, ["b"], ["c", "d"])  # never trained on "a"
    with pytest.raises(ValueError, match=r"A: fold 0 validates on \['a'\], which fold 1 did not train on"):
        fold_cards([fold0, other_split])


def test_a_fold_model_picked_on_its_validation_cases_is_refused(tmp_path: Path) -> None:
    fold0 = _card(tmp_path / "f0", 2, 0, ["c", "d"], ["a", "b"])
    best = _card(tmp_path / "best", 2, 1, ["a", "b"], ["c", "d"])
    card = ModelCard.load(best / "card.json")
    replace_card = ModelCard(provenance={**card.provenance, "validation": {"A": {"c": {"dice": 0.9}}}})
    replace_card.save(best / "card.json")  # as a run's best/ card: the figures it was picked on
    with pytest.raises(ValueError, match=r"best was picked on its validation cases \(a run's best/\)"):
        fold_cards([fold0, best])


def test_a_tta_cross_validation_folder_is_known_by_its_marker(tmp_path: Path) -> None:
    assert not scored_with_tta(tmp_path)
    mark_scored_with_tta(tmp_path)
    assert scored_with_tta(tmp_path) and (tmp_path / TTA_MARKER).is_file()


def test_out_of_fold_scores_each_case_by_its_own_fold_as_segment_does_with_or_without_tta(
        tmp_path: Path, synthetic_dataset: Path) -> None:
    folds = standin_folds(tmp_path, synthetic_dataset)
    plain, with_tta = out_of_fold(folds, device="cpu"), out_of_fold(folds, device="cpu", tta=True)
    assert with_tta.rows != plain.rows  # the stand-in's masks change under test-time augmentation
    for folder, other, cases in zip(folds, folds[::-1], STANDIN_FOLDS.values(), strict=True):
        pairs = [(c.name, c.image, c.label) for c in load_msd_dataset(synthetic_dataset).select(cases)]
        for tta, result in ((False, plain), (True, with_tta)):
            own = [row for row in result.rows["Synthetic"] if row[0] in cases]
            assert evaluate(Segmenter.from_path(folder, device="cpu"), pairs, None, show_progress=False, tta=tta) == own
            trained_on_them = evaluate(Segmenter.from_path(other, device="cpu"), pairs, None, show_progress=False,
                                       tta=tta)
            assert trained_on_them != own  # the fold models differ, so a case scored by the wrong one would show


def test_fold_models_that_make_masks_differently_are_not_one_design(tmp_path: Path, synthetic_dataset: Path) -> None:
    folds = standin_folds(tmp_path, synthetic_dataset)
    fused = [assemble_ensemble(tmp_path / f"fused{k}", {"a": fold, "b": fold}, Postprocessing(fusion=rule))
             for k, (fold, rule) in enumerate(zip(folds, ("mean", "logit_mean"), strict=True))]
    with pytest.raises(ValueError, match=r"make masks differently \(.*fused0: .*fusion='mean'.*fused1: .*fusion="
                                         r"'logit_mean'.*\): not one design"):
        out_of_fold(fused, device="cpu")
    segmenters, chosen, k = fold_segmenters(folds, device="cpu")
    assert [s.card.postprocessing for s, _ in segmenters] == [Postprocessing()] * 2 and (chosen, k) == ([0, 1], 2)


@pytest.mark.slow  # trains two tiny fold models
def test_out_of_fold_scores_every_case_once_with_the_model_that_did_not_train_on_it(
    tmp_path: Path, synthetic_dataset: Path
) -> None:
    runs = [train(tiny_config(synthetic_dataset, tmp_path / f"fold{k}", epochs=1, steps_per_epoch=2, val_every=9,
                              val_cases=(), folds=2, fold=k), show_progress=False).last for k in (0, 1)]
    result = out_of_fold(runs, device="cpu")
    assert (result.folds, result.k, result.whole) == ([0, 1], 2, True)
    rows = result.rows
    scored = [case for case, _ in rows["Synthetic"]]
    assert sorted(scored) == ["case_100", "case_101", "case_102", "case_103"]
    for run in runs:
        card = load_card(run)
        held_out = card.provenance["split"]["Synthetic"]["validation"]
        again = evaluate(Segmenter.from_path(run, device="cpu"),
                         [(c.name, c.image, c.label) for c in load_msd_dataset(synthetic_dataset).select(held_out)],
                         None, show_progress=False)
        assert again == [row for row in rows["Synthetic"] if row[0] in held_out]
    record = cross_validation_record(rows, folds=2, command="two folds")
    assert record["per_dataset"]["Synthetic"]["cases"] == 4
    fused = [assemble_ensemble(tmp_path / f"fused{k}", {"a": run, "b": run}) for k, run in enumerate(runs)]
    assert out_of_fold(fused, device="cpu") == result  # a fold's ensemble (here of one model twice) scores its fold
    mixed = assemble_ensemble(tmp_path / "mixed", {"a": runs[0], "b": runs[1]})
    mixing = r"member 'b' trained on another fold and split than 'a' \(fold 1 of 2 against fold 0 of 2\)"
    with pytest.raises(ValueError, match=mixing):
        out_of_fold([mixed, fused[1]], device="cpu")
    with pytest.raises(ValueError, match=r"cover folds \[0, 0\]"):
        out_of_fold([runs[0], runs[0]], device="cpu")
    with pytest.raises(ValueError, match=r"cover folds \[1\]; 2-fold cross-validation needs 0..1 once each"):
        out_of_fold([runs[1]], device="cpu")
    one_fold = out_of_fold([runs[1]], device="cpu", partial=True)  # progress while the other fold trains
    assert (one_fold.folds, one_fold.whole) == ([1], False)
    assert one_fold.rows == {"Synthetic": [row for row in rows["Synthetic"] if row[0] in load_card(runs[1]).provenance[
        "split"]["Synthetic"]["validation"]]}
    with pytest.raises(ValueError, match=r"cover folds \[1, 1\]; .* at most once each"):
        out_of_fold([runs[1], runs[1]], device="cpu", partial=True)
    excluded = load_card(runs[0]).provenance["split"]["Synthetic"]["validation"][0]
    other_split = train(tiny_config(synthetic_dataset, tmp_path / "other", epochs=1, steps_per_epoch=1, val_every=9,
                                    val_cases=(), folds=2, fold=1, exclude=(excluded,)), show_progress=False).last
    not_one_split = rf"Synthetic: fold 0 validates on \[.*'{excluded}'.*\], which fold 1 did not train on"
    for partial in (False, True):
        with pytest.raises(ValueError, match=not_one_split):
            out_of_fold([runs[0], other_split], device="cpu", partial=partial)
    with pytest.raises(ValueError, match=r"one --folds K design \(K >= 2\), got K = \[0\]"):
        out_of_fold([train(tiny_config(synthetic_dataset, tmp_path / "plain", epochs=1, steps_per_epoch=1,
                                       val_every=9), show_progress=False).last], device="cpu")
