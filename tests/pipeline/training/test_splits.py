"""A run's datasets and their splits: excluded cases are never used, every named case exists exactly once."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import tiny_config, write_msd_dataset

from atriumseg.pipeline.training.dataset import kfold_split, load_msd_dataset
from atriumseg.pipeline.training.splits import split_cases, training_sets


def test_excluded_cases_are_never_used(tmp_path: Path) -> None:
    root = write_msd_dataset(tmp_path / "ds", [1, 2, 3, 4, 5])
    dataset = load_msd_dataset(root)
    config = tiny_config(root, tmp_path / "run", val_cases=("case_002",), exclude=("case_005",))
    train_cases, val_cases = split_cases(dataset, config)
    assert [c.name for c in train_cases] == ["case_001", "case_003", "case_004"]
    assert [c.name for c in val_cases] == ["case_002"]


def test_folds_replace_the_named_validation_cases_and_still_exclude(tmp_path: Path) -> None:
    root = write_msd_dataset(tmp_path / "ds", [1, 2, 3, 4, 5, 6])
    config = tiny_config(root, tmp_path / "run", folds=3, fold=1, val_cases=("case_001",), exclude=("case_006",))
    train_cases, val_cases = split_cases(load_msd_dataset(root), config)
    expected_train, expected_val = kfold_split([f"case_00{i}" for i in range(1, 6)], 3, 1, config.seed)
    assert [c.name for c in val_cases] == expected_val and [c.name for c in train_cases] == expected_train


def test_every_dataset_gets_its_own_split_and_weight(tmp_path: Path) -> None:
    a = write_msd_dataset(tmp_path / "a", [1, 2], name="A")
    b = write_msd_dataset(tmp_path / "b", [3, 4, 5], name="B")
    sets = training_sets(tiny_config(a, tmp_path / "run", datasets=(a, b), weights=(1.0, 3.0),
                                     val_cases=("case_004",)))
    assert [(s.dataset.name, s.weight) for s in sets] == [("A", 1.0), ("B", 3.0)]
    assert [[c.name for c in s.train] for s in sets] == [["case_001", "case_002"], ["case_003", "case_005"]]
    assert [[c.name for c in s.validation] for s in sets] == [[], ["case_004"]]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"val_cases": ("case_999",)}, "in none of the datasets"),
        ({"exclude": ("case_001", "case_002"), "val_cases": ()}, "no training cases left"),
    ],
)
def test_bad_splits_are_refused(tmp_path: Path, overrides, message) -> None:
    a = write_msd_dataset(tmp_path / "a", [1, 2], name="A")
    b = write_msd_dataset(tmp_path / "b", [3, 4], name="B")
    with pytest.raises(ValueError, match=message):
        training_sets(tiny_config(a, tmp_path / "run", datasets=(a, b), **overrides))


def test_the_same_case_name_in_two_datasets_must_be_told_apart(tmp_path: Path) -> None:
    a = write_msd_dataset(tmp_path / "a", [1, 2], name="A")
    b = write_msd_dataset(tmp_path / "b", [2, 3], name="B")
    with pytest.raises(ValueError, match="several datasets"):
        training_sets(tiny_config(a, tmp_path / "run", datasets=(a, b), val_cases=("case_002",)))


def test_two_datasets_of_one_name_are_refused(tmp_path: Path) -> None:
    a = write_msd_dataset(tmp_path / "a", [1], name="Same")
    b = write_msd_dataset(tmp_path / "b", [2], name="Same")
    with pytest.raises(ValueError, match="distinct names"):
        training_sets(tiny_config(a, tmp_path / "run", datasets=(a, b), val_cases=()))


def test_more_folds_than_cases_or_a_fold_without_folds_is_refused(tmp_path: Path) -> None:
    root = write_msd_dataset(tmp_path / "ds", [1, 2, 3])
    with pytest.raises(ValueError, match="5 folds of 3 cases would leave a fold without validation cases"):
        split_cases(load_msd_dataset(root), tiny_config(root, tmp_path / "run", folds=5, fold=4))
    for folds, fold in ((0, 3), (1, 0), (3, 3), (3, -1)):
        with pytest.raises(ValueError, match=rf"--fold {fold} of --folds {folds}: give --folds N \(2 or more\)"):
            tiny_config(root, tmp_path / "run", folds=folds, fold=fold)
