"""The training loop on tiny synthetic datasets: the schedule, the loss, the time budget, and several datasets
trained together with their own validation."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from types import SimpleNamespace

import numpy
import pytest
import torch
from helpers import tiny_config, train, write_msd_dataset
from monai.transforms import RandAffined

from atriumseg.models.checkpoint import load_card, load_model
from atriumseg.pipeline.training import trainer
from atriumseg.pipeline.training.config import TrainConfig
from atriumseg.pipeline.training.splits import training_sets
from atriumseg.pipeline.training.trainer import _loader, learning_rate, make_card, segmentation_loss
from atriumseg.transforms.augmentation import RandDarkenAtriumd
from atriumseg.transforms.preprocessing import IMAGE


def _rows(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run / "metrics.csv").open()))


def test_learning_rate_warms_up_linearly_then_falls_on_a_cosine(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, tmp_path / "run", learning_rate=1e-2, warmup_steps=10)
    assert [learning_rate(config, step, 0.0) for step in (0, 4, 9, 50)] == pytest.approx([1e-3, 5e-3, 1e-2, 1e-2])
    assert learning_rate(config, 100, 0.5) == pytest.approx(5e-3)
    assert learning_rate(config, 100, 1.0) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate(config, 100, 1.7) == pytest.approx(0.0, abs=1e-12)  # past the budget: stays at 0


def test_the_loss_is_dice_plus_cross_entropy_on_logits() -> None:
    labels = torch.zeros(2, 1, 8, 8)
    labels[:, :, 2:6, 2:6] = 1.0
    right = 20.0 * (2 * labels - 1)
    assert segmentation_loss(right, labels).item() < 1e-6
    assert segmentation_loss(-right, labels).item() > 20.0
    undecided = segmentation_loss(torch.zeros_like(labels), labels).item()
    assert undecided == pytest.approx(math.log(2) + 1 - 2 * 0.5 * 32 / (0.5 * 128 + 32), rel=1e-3)


@pytest.mark.slow
def test_time_budget_stops_cleanly_with_a_checkpoint(tmp_path: Path, synthetic_dataset: Path) -> None:
    run = tmp_path / "run"
    config = tiny_config(synthetic_dataset, run, epochs=50, steps_per_epoch=3, max_minutes=1e-4)
    result = train(config, show_progress=False)
    assert result.epochs_done == 1 and [r["epoch"] for r in _rows(run)] == ["1"]
    network, card = load_model(run / "last")
    assert card.provenance["epochs"] == 1 and card.provenance["steps"] == 3
    for name, value in network.state_dict().items():
        assert torch.equal(value, result.network.state_dict()[name].cpu()), name
    assert float(_rows(run)[0]["val_dice_mean"]) == pytest.approx(result.best_dice, abs=1e-4)  # validated at the stop


@pytest.mark.slow
def test_the_training_time_counts_loading_the_data_and_validating(
    tmp_path: Path, synthetic_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def slow(function, seconds: float):
        def wrapped(*args, **kwargs):
            time.sleep(seconds)
            return function(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(trainer, "training_sets", slow(trainer.training_sets, 1.0))  # reading and caching the data
    monkeypatch.setattr(trainer, "validate", slow(trainer.validate, 1.5))
    run = tmp_path / "run"
    began = time.monotonic()
    train(tiny_config(synthetic_dataset, run, epochs=1, steps_per_epoch=2, val_every=1), show_progress=False)
    took = time.monotonic() - began
    seconds = load_card(run / "last").provenance["training_seconds"]
    assert seconds == pytest.approx(took, abs=0.5)  # not 2.5 s short: the sleeps are counted
    assert float(_rows(run)[0]["seconds"]) == pytest.approx(seconds, abs=0.1)


@pytest.mark.slow
def test_no_epoch_starts_once_validating_has_spent_the_budget(
    tmp_path: Path, synthetic_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [0.0]  # the trainer's clock, moved only by validation
    real_validate = trainer.validate

    def validate(*args, **kwargs):
        now[0] += 100.0
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(trainer, "time", SimpleNamespace(monotonic=lambda: now[0]))
    monkeypatch.setattr(trainer, "validate", validate)
    run = tmp_path / "run"
    result = train(tiny_config(synthetic_dataset, run, epochs=3, steps_per_epoch=2, val_every=1, max_minutes=1.0),
                   show_progress=False)
    assert result.epochs_done == 1 and [r["epoch"] for r in _rows(run)] == ["1"]  # not a second at lr 0


@pytest.mark.slow
def test_training_on_two_datasets_validates_each(tmp_path: Path) -> None:
    bright = write_msd_dataset(tmp_path / "bright", [1, 2, 3], name="Bright")
    dark = write_msd_dataset(tmp_path / "dark", [11, 12, 13], name="Dark", gain=40.0, offset=300.0)
    run = tmp_path / "run"
    config = tiny_config(bright, run, datasets=(bright, dark), weights=(1.0, 3.0), epochs=2, steps_per_epoch=3,
                         val_every=1, val_cases=("case_003", "case_013"))
    train(config, show_progress=False)
    rows = _rows(run)
    assert {"val_dice_Bright", "val_dice_Dark", "val_dice_mean"} <= set(rows[0])
    for row in rows:
        assert float(row["val_dice_mean"]) == pytest.approx(
            (float(row["val_dice_Bright"]) + float(row["val_dice_Dark"])) / 2, abs=1e-4)
        assert "case_003=" in row["val_dice_per_case"] and "case_013=" in row["val_dice_per_case"]
    card = load_card(run / "best")
    assert card.provenance["split"] == {
        "Bright": {"train": ["case_001", "case_002"], "validation": ["case_003"], "excluded": []},
        "Dark": {"train": ["case_011", "case_012"], "validation": ["case_013"], "excluded": []},
    }
    assert [d["weight"] for d in card.provenance["data"]] == [1.0, 3.0]
    assert card.design == config.design and card.preprocessing.min_slice_size == 40  # 38-voxel crop on a grid of 4
    best_epoch = max(rows, key=lambda r: float(r["val_dice_mean"]))
    assert card.provenance["validation_dice"]["overall"] == pytest.approx(float(best_epoch["val_dice_mean"]), abs=1e-4)
    assert set(card.provenance["validation"]) == {"Bright", "Dark"}


@pytest.mark.parametrize(("darken", "zoom"), [(0.0, 0.2), (0.5, 0.35)])
def test_the_slices_drawn_follow_the_runs_seed_not_the_global_generator(tmp_path: Path, synthetic_dataset: Path,
                                                                         darken: float, zoom: float) -> None:
    """A run resumed at epoch E seeds its loader with seed + E: what it draws must not depend on anything else (the
    darkening's factors included); the run's darkening share and zoom range reach the chain."""
    config = tiny_config(synthetic_dataset, tmp_path / "run", darken=darken, zoom=zoom)
    card, sets = make_card(config, {}), training_sets(config)

    def first_batch(seed: int, elsewhere: int, run: TrainConfig = config) -> torch.Tensor:
        torch.manual_seed(elsewhere)  # whatever the process drew before (network init, an earlier epoch)
        numpy.random.seed(elsewhere)
        return next(iter(_loader(run, card, sets, seed, show_progress=False)))[IMAGE]

    assert torch.equal(first_batch(3, 0), first_batch(3, 99))
    assert not torch.equal(first_batch(3, 0), first_batch(4, 0))
    chain = _loader(config, card, sets, 3, show_progress=False).dataset.transform.transforms
    assert [t.prob for t in chain if isinstance(t, RandDarkenAtriumd)] == ([darken] if darken else [])
    assert [t.rand_affine.rand_affine_grid.scale_range for t in chain if isinstance(t, RandAffined)] == [(zoom, zoom)]
