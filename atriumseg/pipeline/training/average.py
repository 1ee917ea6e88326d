"""Weight averaging ("model soup"): one model whose weights are the mean of several models of one design.

Models fine-tuned from the same parent (other patch sizes, dataset shares, schedules) lie close enough in weight
space that their uniform average is a model of its own, often better than each (Wortsman et al., ICML 2022),
and, unlike an ensemble, costs no more at inference than one of them. The average keeps the story: the
union of the training data, a split whose held-out cases none of the models trained on, and a lineage that keeps
every model's stages after those they share. Loading reads safetensors and JSON only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch

from atriumseg._version import __version__
from atriumseg.models.card import ModelCard, training_data
from atriumseg.models.checkpoint import CheckpointError, load_model, model_folder, save_model
from atriumseg.models.ensemble import is_ensemble
from atriumseg.models.lineage import averaged_lineage, lineage_of
from atriumseg.pipeline.training.provenance import model_name


def average_models(models: Sequence[Path], output: Path, command: str = "") -> ModelCard:
    """Write into ``output`` the model whose weights are the mean of ``models``' weights (two or more model
    folders of one design) and return its card.

    The models must share the architecture, the post-processing and the frame their network sees (plane,
    orientation, spacing, neighbour slices, intensity scaling), else a :class:`CheckpointError` names what
    differs. The average takes the first model's design, its slice padding (``min_slice_size``, which follows the
    training patch and sets the work per focused slice) too. A model picked on its validation cases (a run's
    ``best/``) is refused: those cases would no longer measure the average.
    """
    if len(models) < 2:
        raise CheckpointError(f"averaging needs two or more models, got {len(models)}")
    folders = [model_folder(path) for path in models]
    for folder in folders:
        if is_ensemble(folder):
            raise CheckpointError(f"model {folder} is an ensemble; average its members one by one (the same member "
                                  "of each ensemble), then `atriumseg assemble` the averages")
        if [f.resolve() for f in folders].count(folder.resolve()) > 1:
            raise CheckpointError(f"model {folder} is given twice; each model counts once in the average")
    loaded = {model_name(folder): load_model(folder) for folder in folders}
    cards = {name: card for name, (_, card) in loaded.items()}
    first = _check_one_design(cards)
    states = [network.state_dict() for network, _ in loaded.values()]
    network = loaded[next(iter(loaded))][0]
    network.load_state_dict({key: _mean([state[key] for state in states]) for key in states[0]})
    card = ModelCard.of(first, package_version=__version__,
                        provenance=_averaged_provenance(cards, str(output), command))
    save_model(network, card, output)
    return card


def _check_one_design(cards: dict[str, ModelCard]) -> ModelCard:
    """The first model's card, once every card is of its design (but for the slice padding) and none was picked
    on its validation cases; else a :class:`CheckpointError` naming the model."""
    (first_name, first), *others = cards.items()
    for name, card in cards.items():
        if "validation" in card.provenance:
            raise CheckpointError(f"model {name} was picked on its validation cases (a run's best/) or measured on "
                                  "them when shipped; average the runs' last/ folders, so held-out cases still "
                                  "measure the average")
    for name, card in others:
        for part in ("architecture", "postprocessing"):
            if getattr(card, part) != getattr(first, part):
                raise CheckpointError(f"model {name} has another {part} than {first_name} ({getattr(card, part)} "
                                      f"against {getattr(first, part)}); only models of one design average")
        pre = dataclasses.replace(card.preprocessing, min_slice_size=first.preprocessing.min_slice_size)
        if pre != first.preprocessing:
            raise CheckpointError(f"model {name} sees other slices than {first_name} ({card.preprocessing} against "
                                  f"{first.preprocessing}); only networks of one frame average")
    return first


def _mean(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The element-wise mean of floating-point tensors (summed in float64), in the first one's dtype; other
    tensors must be equal and are kept."""
    if not tensors[0].is_floating_point():
        if any(not torch.equal(t, tensors[0]) for t in tensors[1:]):
            raise CheckpointError("the models' integer buffers differ; they are not of one design")
        return tensors[0]
    return torch.stack([t.double() for t in tensors]).mean(0).to(tensors[0].dtype)


def _averaged_provenance(cards: dict[str, ModelCard], run: str, command: str) -> dict:
    """What the average's card says of how it was made: every model's training data, the split it implies, the
    fold when all trained on the same one (so fold averages cross-validate), the models averaged and the lineage."""
    data = {}
    for card in cards.values():
        for item in training_data(card.provenance):
            data.setdefault(item.get("dataset"), item)
    splits = [card.provenance.get("split", {}) for card in cards.values()]
    configs = [card.provenance.get("config", {}) for card in cards.values()]
    folds = {(c.get("folds", 0), c.get("fold")) for c in configs}
    one_fold = all(s == splits[0] for s in splits) and len(folds) == 1 and configs[0].get("folds", 0) >= 2
    split = _merged_split(splits)
    counts = {name: {"train": len(part["train"]), "validation": len(part["validation"])}
              for name, part in split.items()}
    return {"data": list(data.values()), "split": split,
            "config": {"folds": configs[0]["folds"], "fold": configs[0].get("fold")} if one_fold else {},
            "averaged": list(cards), "command": command,
            "lineage": averaged_lineage(run, {name: lineage_of(card) for name, card in cards.items()}, counts)}


def _merged_split(splits: list[dict]) -> dict:
    """Per dataset: the cases any model trained on; as validation, those some model held out and none trained on;
    as excluded, those every model left out."""
    merged = {}
    for name in dict.fromkeys(name for split in splits for name in split):
        parts = [split.get(name, {}) for split in splits]
        train = sorted({case for part in parts for case in part.get("train", [])})
        validation = sorted({case for part in parts for case in part.get("validation", [])} - set(train))
        excluded = set.intersection(*(set(part.get("excluded", [])) for part in parts)) - set(train)
        merged[name] = {"train": train, "validation": validation, "excluded": sorted(excluded)}
    return merged
