"""Validation during training (whole held-out volumes segmented exactly as users segment them), and the
cross-validated figures a card carries as its expected accuracy."""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from atriumseg.models.card import ModelCard
from atriumseg.models.checkpoint import load_card
from atriumseg.models.ensemble import is_ensemble, load_ensemble_card
from atriumseg.pipeline.analysis.metrics import CaseMetrics, summarise
from atriumseg.pipeline.evaluation.evaluate import evaluate
from atriumseg.pipeline.inference.segmenter import Segmenter
from atriumseg.pipeline.training.dataset import LabelledCase, MSDDataset, load_msd_dataset

TTA_MARKER = "scored_with_tta.txt"  # in a tools/cross_validate.py folder scored with --tta


def validate(segmenter: Segmenter, cases: list[LabelledCase], orientation: str | None) -> dict[str, dict[str, float]]:
    """Per-case metrics (Dice, HD95, volumes...) of whole held-out volumes, keyed by case name."""
    rows = evaluate(segmenter, [(c.name, c.image, c.label) for c in cases], orientation, show_progress=False)
    return {name: asdict(metrics) for name, metrics in rows}


def validation_summary(per_dataset: dict[str, dict[str, dict[str, float]]]) -> dict[str, float]:
    """Mean Dice per dataset and ``overall``, the mean of those means (each dataset counts once)."""
    means = {name: float(np.mean([m["dice"] for m in cases.values()])) for name, cases in per_dataset.items() if cases}
    return {**means, "overall": float(np.mean(list(means.values())))} if means else {}


def cross_validation_record(per_dataset: dict[str, list[tuple[str, CaseMetrics]]], folds: int,
                            command: str) -> dict:
    """The card's ``provenance.cross_validation``: each dataset's out-of-fold per-case metrics summarised
    (:class:`~atriumseg.pipeline.analysis.metrics.Summary` fields), with the fold count and the command
    that made them. Each case must be scored by the fold model that did not train on it."""
    if folds < 2 or not per_dataset:
        raise ValueError(f"cross-validation needs 2 or more folds and a dataset, got {folds} and {list(per_dataset)}")
    return {"folds": folds, "command": command,
            "per_dataset": {name: asdict(summarise(rows)) for name, rows in per_dataset.items()}}


def held_out(card: ModelCard) -> list[tuple[MSDDataset, list[LabelledCase]]]:
    """Each dataset a model was trained on (read from where its card says, with the same header fix) and the
    validation cases its run held out of training."""
    pairs = []
    for item in card.provenance["data"]:
        dataset = load_msd_dataset(Path(item["root"]), item["header_orientation_fix"])
        pairs.append((dataset, dataset.select(card.provenance["split"][dataset.name]["validation"])))
    return pairs


@dataclass(frozen=True)
class OutOfFold:
    """Out-of-fold per-case metrics per dataset, and which folds of the ``k`` produced them."""

    rows: dict[str, list[tuple[str, CaseMetrics]]]
    folds: list[int]
    k: int

    @property
    def whole(self) -> bool:
        """Every fold is in: the rows are cross-validated figures, not progress."""
        return self.folds == list(range(self.k))


def out_of_fold(fold_models: list[Path], device: str = "auto", partial: bool = False, tta: bool = False) -> OutOfFold:
    """Every case of a K-fold cross-validation scored by the fold model that did not train on it, per dataset.

    ``fold_models`` are the K models of one ``--folds K`` design (each fold run's ``last/``, so no epoch is
    picked on the cases it is scored on, or an ensemble of one fold's members); each segments its own fold's
    validation cases as users run it. :func:`fold_cards` refuses models that are not one whole cross-validation;
    ``partial`` accepts some of the K folds (each once), for progress while the rest train: their cases only,
    not the cross-validated figures. ``tta`` segments with test-time augmentation (``segment --tta``): figures of that
    option, not of the model as it runs by default. The rows of a whole cross-validation without ``tta`` feed
    :func:`cross_validation_record`.
    """
    segmenters, folds, k = fold_segmenters(fold_models, device, partial)
    rows: dict[str, list[tuple[str, CaseMetrics]]] = {}
    for segmenter, card in segmenters:
        for dataset, cases in held_out(card):
            scored = evaluate(segmenter, [(c.name, c.image, c.label) for c in cases], dataset.orientation,
                              show_progress=False, tta=tta)
            rows.setdefault(dataset.name, []).extend(scored)
    return OutOfFold(rows, folds, k)


def fold_cards(fold_models: list[Path], partial: bool = False) -> tuple[list[tuple[Path, ModelCard]], list[int], int]:
    """Each fold model's folder and :func:`fold_card` in the order given, the folds they cover (sorted) and the
    design's K, once they are known to be one K-fold cross-validation.

    A :class:`ValueError`, naming each folder's K and fold where those are at fault, refuses: a model of no
    ``--fold``, another K, a fold missing or twice (``partial`` accepts some of the K folds, each once), a fold's
    validation case that another fold did not train on (another seed, data or exclusion: not one split), and an
    ensemble mixing folds, and a model picked on its validation cases (a run's ``best/``).
    """
    cards = [(Path(folder), fold_card(Path(folder))) for folder in fold_models]
    configs = [card.provenance.get("config", {}) for _, card in cards]
    named = ", ".join(f"{folder}: fold {config.get('fold')} of {config.get('folds', 0)}"
                      for (folder, _), config in zip(cards, configs, strict=True))
    ks = sorted({config.get("folds", 0) for config in configs})
    if len(ks) != 1 or ks[0] < 2 or any(config.get("fold") is None for config in configs):
        raise ValueError(f"fold models must come from one --folds K design (K >= 2), got K = {ks} ({named})")
    k, folds = ks[0], sorted(config["fold"] for config in configs)
    some = len(set(folds)) == len(folds) and set(folds) <= set(range(k))
    if not (folds == list(range(k)) or (partial and some)):
        needs = f"folds of 0..{k - 1} at most once each" if partial else f"0..{k - 1} once each"
        raise ValueError(f"the fold models cover folds {folds}; {k}-fold cross-validation needs {needs} ({named})")
    _check_one_split([card for _, card in cards])
    for folder, _ in cards:
        _refuse_picked(folder)
    return cards, folds, k


def fold_segmenters(
    fold_models: list[Path], device: str = "auto", partial: bool = False
) -> tuple[list[tuple[Segmenter, ModelCard]], list[int], int]:
    """Each fold model loaded as a :class:`Segmenter` beside its :func:`fold_card`, the folds and K, once
    :func:`fold_cards` accepts them and their post-processing (threshold, clean-up, fusion) is one: fold models that
    make masks differently are not one design (a :class:`ValueError` says so)."""
    cards, folds, k = fold_cards(fold_models, partial)
    segmenters = [(Segmenter.from_path(folder, device=device), card) for folder, card in cards]
    posts = {segmenter.card.postprocessing for segmenter, _ in segmenters}
    if len(posts) != 1:
        listed = "; ".join(f"{folder}: {segmenter.card.postprocessing}"
                           for (folder, _), (segmenter, _) in zip(cards, segmenters, strict=True))
        raise ValueError(f"the fold models' cards make masks differently ({listed}): not one design")
    return segmenters, folds, k


def _refuse_picked(folder: Path) -> None:
    """A model picked on its validation cases (a run's ``best/``, whose card holds their figures) would flatter
    its out-of-fold figures: a :class:`ValueError` names it (or the ensemble's member)."""
    names = load_ensemble_card(folder).members if is_ensemble(folder) else [""]
    for name in names:
        if load_card(folder / name if name else folder).picked_on_validation:
            where = f"{folder}, member {name!r}" if name else str(folder)
            raise ValueError(f"{where} was picked on its validation cases (a run's best/); score each fold's last/")


def _check_one_split(cards: list[ModelCard]) -> None:
    """Every fold's validation cases are training cases of every other fold, in each dataset: one split."""
    for mine in cards:
        for theirs in cards:
            if theirs is mine:
                continue
            for name, part in mine.provenance.get("split", {}).items():
                other = theirs.provenance.get("split", {}).get(name, {})
                untrained = sorted(set(part.get("validation", [])) - set(other.get("train", [])))
                if untrained:
                    fold, other_fold = mine.provenance["config"]["fold"], theirs.provenance["config"]["fold"]
                    raise ValueError(f"{name}: fold {fold} validates on {untrained[:3]}, which fold {other_fold} "
                                     "did not train on: the fold models are not one split (another seed, data or "
                                     "--exclude?)")


def fold_card(folder: Path) -> ModelCard:
    """The card that says which fold ``folder`` validates on: its own, or an ensemble's first member's once every
    member is known to come from the same fold of the same split (else a :class:`ValueError` names the member)."""
    if not is_ensemble(folder):
        return load_card(folder)
    names = load_ensemble_card(folder).members
    cards = {name: load_card(folder / name) for name in names}
    first = cards[names[0]]

    def fold(card: ModelCard) -> dict:
        config = card.provenance.get("config", {})
        return {"K": config.get("folds", 0), "fold": config.get("fold"), "split": card.provenance.get("split")}

    theirs = fold(first)
    for name, card in cards.items():
        mine = fold(card)
        differ = [part for part, value in mine.items() if value != theirs[part]]
        if differ:
            raise ValueError(
                f"ensemble {folder}: member {name!r} trained on another {' and '.join(differ)} than {names[0]!r} "
                f"(fold {mine['fold']} of {mine['K']} against fold {theirs['fold']} of {theirs['K']}); "
                "a fold's ensemble must hold only that fold's models"
            )
    return first


def mark_scored_with_tta(folder: Path) -> None:
    """Mark a ``tools/cross_validate.py --tta`` folder (``TTA_MARKER``) so :func:`scored_with_tta` knows it."""
    (Path(folder) / TTA_MARKER).write_text("These CSVs score `atriumseg segment --tta` (tools/cross_validate.py "
                                           "--tta): an option's figures, not a card's expected accuracy.\n")


def scored_with_tta(folder: Path) -> bool:
    """Whether a ``tools/cross_validate.py`` folder holds figures of ``segment --tta`` (it wrote ``TTA_MARKER``
    there): the figures of that option, never a card's expected accuracy."""
    return (Path(folder) / TTA_MARKER).is_file()


def cross_validated_datasets(folder: Path) -> list[str]:
    """The datasets a ``tools/cross_validate.py`` output folder holds whole (``DATASET.csv``), sorted; progress files
    (``DATASET.partial.csv``) are not figures (a :class:`ValueError` when there is none)."""
    found = sorted(path.stem for path in Path(folder).glob("*.csv") if "." not in path.stem)
    if not found:
        raise ValueError(f"{folder}: no DATASET.csv files")
    return found


def read_metrics_csv(path: Path) -> list[tuple[str, CaseMetrics]]:
    """Per-case metrics from a CSV that ``atriumseg evaluate`` wrote (a ``case`` column, then the fields)."""
    with open(path, newline="") as fh:
        return [(row.pop("case"), CaseMetrics(**{k: float(v) for k, v in row.items()})) for row in csv.DictReader(fh)]
