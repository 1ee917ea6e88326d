"""Training on tiny synthetic datasets: the loss falls, checkpoints load, runs resume, splits are honest."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from helpers import tiny_config, train, write_msd_dataset

from atriumseg.models.checkpoint import load_card, load_model
from atriumseg.pipeline.dataset import kfold_split, load_msd_dataset
from atriumseg.pipeline.training import STATE_NAME, split_cases


def _rows(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run / "metrics.csv").open()))


def test_training_lowers_the_loss_and_writes_a_loadable_model(tiny_model: Path) -> None:
    rows = _rows(tiny_model.parent)
    first, last = float(rows[0]["loss"]), float(rows[-1]["loss"])
    assert last < 0.5 * first, f"loss went from {first} to {last}"
    network, card = load_model(tiny_model)
    assert card.provenance["split"]["validation"] == ["case_103"]
    assert card.provenance["validation"]["case_103"]["dice"] > 0.8
    assert card.architecture.width == 16 and isinstance(network, torch.nn.Module)


def test_resume_continues_from_the_last_epoch(tmp_path: Path, synthetic_dataset: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(synthetic_dataset, run, epochs=2, steps_per_epoch=3, val_every=2), show_progress=False)
    first = torch.load(run / "last" / STATE_NAME, weights_only=True)
    assert first["epoch"] == 2 and first["step"] == 6
    train(tiny_config(synthetic_dataset, run, epochs=3, steps_per_epoch=3, val_every=2, resume=True), show_progress=False)
    state = torch.load(run / "last" / STATE_NAME, weights_only=True)
    assert state["epoch"] == 3 and state["step"] == 9
    assert [r["epoch"] for r in _rows(run)] == ["1", "2", "3"]
    assert load_card(run / "last").provenance["epochs"] == 3


def test_time_budget_stops_cleanly_with_a_checkpoint(tmp_path: Path, synthetic_dataset: Path) -> None:
    run = tmp_path / "run"
    result = train(tiny_config(synthetic_dataset, run, epochs=50, steps_per_epoch=3, max_minutes=1e-4), show_progress=False)
    assert result.epochs_done == 1
    load_model(run / "last")


def test_kfold_splits_cover_every_case_once() -> None:
    names = [f"c{i}" for i in range(7)]
    validation = [kfold_split(names, 3, fold)[1] for fold in range(3)]
    assert sorted(sum(validation, [])) == sorted(names)
    for fold in range(3):
        train_names, val_names = kfold_split(names, 3, fold)
        assert not set(train_names) & set(val_names)


def test_excluded_cases_are_never_used(tmp_path: Path) -> None:
    root = write_msd_dataset(tmp_path / "ds", [1, 2, 3, 4, 5])
    dataset = load_msd_dataset(root)
    config = tiny_config(root, tmp_path / "run", val_cases=("case_002",), exclude=("case_005",))
    train_cases, val_cases = split_cases(dataset, config)
    assert [c.name for c in train_cases] == ["case_001", "case_003", "case_004"]
    assert [c.name for c in val_cases] == ["case_002"]


@pytest.mark.parametrize(
    ("name", "reference", "declared", "expected"),
    [
        ("LeftAtrium", "King's College London", "known", "ASL"),
        ("Synthetic", "atriumseg tests", "known", None),
        ("LeftAtrium", "King's College London", None, None),
        ("Synthetic", "atriumseg tests", "pir", "PIR"),
    ],
)
def test_header_fix_applies_only_where_declared(tmp_path: Path, name, reference, declared, expected) -> None:
    root = write_msd_dataset(tmp_path / "ds", [1])
    meta = json.loads((root / "dataset.json").read_text())
    meta.update(name=name, reference=reference)
    (root / "dataset.json").write_text(json.dumps(meta))
    assert load_msd_dataset(root, declared).orientation == expected
