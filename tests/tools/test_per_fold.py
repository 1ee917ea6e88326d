"""``tools/per_fold.py``: out-of-fold CSVs grouped by each fold model's validation cases, and a clear refusal when a
fold's case is not in the CSVs."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from helpers import load_tool

from atriumseg.models.card import ModelCard
from atriumseg.pipeline.analysis.metrics import CaseMetrics
from atriumseg.pipeline.evaluation.table import write_metrics_csv

CASES = {0: ["a", "b"], 1: ["c", "d"]}  # each fold's validation cases of dataset "A"
DICE = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.95}


@pytest.fixture(scope="module")
def per_fold() -> ModuleType:
    return load_tool("per_fold")


def _fold_model(folder: Path, fold: int) -> Path:
    train = [case for other, cases in CASES.items() if other != fold for case in cases]
    split = {"A": {"train": train, "validation": CASES[fold]}, "B": {"train": train, "validation": []}}
    folder.mkdir(parents=True)
    ModelCard(provenance={"config": {"folds": 2, "fold": fold}, "split": split}).save(folder / "card.json")
    return folder


def _csvs(folder: Path, cases: list[str]) -> Path:
    rows = [(case, CaseMetrics(DICE[case], 3.0, 1.0, 90.0, 100.0, -10.0, 10.0)) for case in cases]
    write_metrics_csv(rows, folder / "A.csv")
    (folder / "A.partial.csv").write_text("case,dice\n")  # progress files are not a design's figures
    return folder


def test_groups_each_datasets_cases_by_the_fold_that_validated_on_them(per_fold: ModuleType, tmp_path: Path) -> None:
    models = [_fold_model(tmp_path / f"fold{k}", k) for k in (1, 0)]
    grouped = per_fold.per_fold(_csvs(tmp_path / "cv", sorted(DICE)), models)
    assert [(fold, dataset, [case for case, _ in rows]) for fold, dataset, rows in grouped] == [
        (0, "A", ["a", "b"]), (1, "A", ["c", "d"])]  # fold order; "B" has no validation cases, no CSV
    lines = per_fold.table(grouped).splitlines()
    assert lines[2] == "| 0 | A (2) | 0.8500 | 0.800 (b) | 10.0% |"
    assert lines[3] == "| 1 | A (2) | 0.8250 | 0.700 (c) | 10.0% |"


def test_a_fold_case_missing_from_the_csvs_is_named(per_fold: ModuleType, tmp_path: Path) -> None:
    models = [_fold_model(tmp_path / f"fold{k}", k) for k in (0, 1)]
    with pytest.raises(ValueError, match=r"fold 1 validates on \['d'\] \(1 in all\), not in .*A\.csv"):
        per_fold.per_fold(_csvs(tmp_path / "cv", ["a", "b", "c"]), models)
    (tmp_path / "cv" / "A.csv").rename(tmp_path / "cv" / "C.csv")
    with pytest.raises(ValueError, match=r"fold 0 validates on A, which .*cv has no CSV of"):
        per_fold.per_fold(tmp_path / "cv", models)


def test_models_that_are_not_folds_of_one_split_are_refused(per_fold: ModuleType, tmp_path: Path) -> None:
    csvs, fold0 = _csvs(tmp_path / "cv", sorted(DICE)), _fold_model(tmp_path / "fold0", 0)
    with pytest.raises(ValueError, match=r"cover folds \[0, 0\]; 2-fold cross-validation needs folds of 0..1 at most"):
        per_fold.per_fold(csvs, [fold0, fold0])
    (tmp_path / "whole").mkdir()
    ModelCard().save(tmp_path / "whole" / "card.json")
    with pytest.raises(ValueError, match=r"one --folds K design \(K >= 2\), got K = \[0\]"):
        per_fold.per_fold(csvs, [tmp_path / "whole"])
    other = _fold_model(tmp_path / "other" / "fold1", 1)  # fold 1 of another split: it never trained on "a"
    card = ModelCard.load(other / "card.json")
    card.provenance["split"]["A"]["train"] = ["b"]
    card.save(other / "card.json")
    with pytest.raises(ValueError, match=r"fold 0 validates on \['a'\], which fold 1 did not train on"):
        per_fold.per_fold(csvs, [fold0, other])
