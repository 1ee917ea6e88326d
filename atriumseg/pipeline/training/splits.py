"""The datasets of a run, each split into training and validation cases."""

from __future__ import annotations

from dataclasses import dataclass

from atriumseg.pipeline.training.config import TrainConfig
from atriumseg.pipeline.training.dataset import LabelledCase, MSDDataset, kfold_split, load_msd_dataset


@dataclass(frozen=True)
class TrainingSet:
    """One dataset of a run with its share of the batches and its split."""

    dataset: MSDDataset
    weight: float
    train: list[LabelledCase]
    validation: list[LabelledCase]


def split_cases(dataset: MSDDataset, config: TrainConfig) -> tuple[list[LabelledCase], list[LabelledCase]]:
    """(training, validation) cases of one dataset: the ``val_cases`` it holds, or fold ``fold`` of ``folds``.

    ``exclude`` is never used.
    """
    names = [c.name for c in dataset.cases if c.name not in config.exclude]
    if config.folds > len(names):
        raise ValueError(f"{dataset.root}: {config.folds} folds of {len(names)} cases would leave a fold without "
                         "validation cases; use at most as many --folds as the smallest dataset has cases")
    if config.folds:
        train_names, val_names = kfold_split(names, config.folds, config.fold, config.seed)
    else:
        val_names = [n for n in config.val_cases if n in names]
        train_names = [n for n in names if n not in val_names]
    if not train_names:
        raise ValueError(f"{dataset.root}: no training cases left after the validation split and exclusions")
    return dataset.select(train_names), dataset.select(val_names)


def split_record(sets: list[TrainingSet], exclude: tuple[str, ...]) -> dict[str, dict[str, list[str]]]:
    """Each dataset's training, validation and excluded case names, as a card records them."""
    return {s.dataset.name: {"train": [c.name for c in s.train], "validation": [c.name for c in s.validation],
                             "excluded": [c.name for c in s.dataset.cases if c.name in exclude]} for s in sets}


def training_sets(config: TrainConfig) -> list[TrainingSet]:
    """Load every dataset of the run and split it; names in ``val_cases``/``exclude`` must each exist once."""
    datasets = [load_msd_dataset(root, o) for root, o in zip(config.datasets, config.orientations, strict=True)]
    names = [d.name for d in datasets]
    if len(set(names)) != len(names):
        raise ValueError(f"datasets must have distinct names in dataset.json, got {names}")
    owners: dict[str, list[str]] = {}
    for d in datasets:
        for c in d.cases:
            owners.setdefault(c.name, []).append(d.name)
    for name in (*config.val_cases, *config.exclude):
        if name not in owners:
            raise ValueError(f"case {name!r} is in none of the datasets {names}")
        if len(owners[name]) > 1:
            raise ValueError(f"case {name!r} is in several datasets ({owners[name]}); rename one")
    return [TrainingSet(dataset, weight, *split_cases(dataset, config))
            for dataset, weight in zip(datasets, config.weights, strict=True)]
