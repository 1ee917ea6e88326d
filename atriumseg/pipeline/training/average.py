"""Weight averaging ("model soup"): one model whose weights are the mean of several models of one design.

Models fine-tuned from the same parent (other patch sizes, dataset shares, schedules) lie close enough in weight
space that their uniform average is a model of its own, often better than each (Wortsman et al., ICML 2022),
and, unlike an ensemble, costs no more at inference than one of them. The average keeps the story: the
union of the training data, a split whose held-out cases none of the models trained on, and a lineage that keeps
every model's stages after those they share. Loading reads safetensors and JSON only.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from atriumseg._version import __version__
from atriumseg.models.card import ModelCard, training_data
from atriumseg.models.checkpoint import (
    CARD_NAME,
    STATE_NAME,
    WEIGHTS_NAME,
    CheckpointError,
    load_card,
    load_model,
    model_folder,
    save_model,
)
from atriumseg.models.ensemble import is_ensemble, load_ensemble_card
from atriumseg.models.lineage import averaged_lineage, lineage_of
from atriumseg.models.names import model_name
from atriumseg.pipeline.io.writing import check_output_file

log = logging.getLogger(__name__)


def average_models(models: Sequence[Path], output: Path, command: str = "", overwrite: bool = False) -> ModelCard:
    """Write into ``output`` the model whose weights are the mean of ``models``' weights (two or more model
    folders of one design) and return its card.

    The models must share the architecture, the post-processing and the frame their network sees (plane,
    orientation, spacing, neighbour slices, intensity scaling), else a :class:`CheckpointError` names what
    differs. The average takes the first model's design, its slice padding (``min_slice_size``, which follows the
    training patch and sets the work per focused slice) too. Refused as well: a model picked on its validation
    cases (a run's ``best/``: those cases would no longer measure the average), the same weights twice, a model
    with an average that already holds it, an ensemble, and an ``output`` that :func:`_check_output` finds would
    lose something or cannot be written (a model there is replaced only with ``overwrite``).
    """
    if isinstance(models, (str, os.PathLike)):
        raise TypeError(f"models must be a list of model folders, got one path: {models}")
    if len(models) < 2:
        raise CheckpointError(f"averaging needs two or more models, got {len(models)}")
    command = command or f"atriumseg.average_models({[str(m) for m in models]!r}, {str(output)!r})"
    folders = [model_folder(path) for path in models]
    for folder in folders:
        if is_ensemble(folder):
            raise CheckpointError(f"model {folder} is an ensemble; average its members one by one (the same member "
                                  "of each ensemble), then `atriumseg assemble` the averages")
    _check_output(Path(output), folders, overwrite)
    loaded = [(model_name(folder), *load_model(folder)) for folder in folders]
    first = _check_one_design([(name, card) for name, _, card in loaded])
    _check_distinct([(name, network.state_dict()) for name, network, _ in loaded])
    provenance = _averaged_provenance({name: card for name, _, card in loaded}, str(output), command)
    _check_no_stage_twice(provenance["lineage"][-1])
    states = [network.state_dict() for _, network, _ in loaded]
    network = loaded[0][1]
    network.load_state_dict({key: torch.stack([s[key].double() for s in states]).mean(0).float() for key in states[0]})
    card = ModelCard.of(first, package_version=__version__, provenance=provenance)
    save_model(network, card, output)
    return card


def _check_output(output: Path, folders: list[Path], overwrite: bool) -> None:
    """Refuse, before any work, an ``output`` that would lose something or cannot be written: a folder of the
    models averaged, a run's ``last/`` or ``best/``, an ensemble or its member, a folder holding anything but a model
    (a model only with ``overwrite``), or a place this process cannot write to."""
    for folder in folders:
        mine, theirs = output.resolve(), folder.resolve()
        if mine == theirs or mine in theirs.parents or theirs in mine.parents:
            raise CheckpointError(f"{output} is, holds or lies in the folder of model {folder}; write the average "
                                  "to a folder of its own")
    parent = output.parent
    if is_ensemble(parent) and output.name in load_ensemble_card(parent).members:
        raise CheckpointError(f"{output} is a member of the ensemble {parent}, whose card would no longer describe "
                              "it; write the average to a folder of its own, then `atriumseg assemble`")
    check_output_file(output / CARD_NAME, overwrite=True)  # a folder, or a place one can be made, writable
    if not output.is_dir() or not any(output.iterdir()):
        return
    if (output / STATE_NAME).exists():
        raise CheckpointError(f"{output} holds a run's training state ({STATE_NAME}): --resume would continue the "
                              "run's weights, not the average; write the average to a folder of its own")
    if is_ensemble(output):
        raise CheckpointError(f"{output} holds an ensemble; write the average to a folder of its own")
    others = sorted(p.name for p in output.iterdir() if p.name not in (CARD_NAME, WEIGHTS_NAME))
    if others:
        raise CheckpointError(f"{output} holds more than a model ({', '.join(others[:5])}); write the average to a "
                              "new or empty folder")
    if (output / CARD_NAME).is_file() and load_card(output).picked_on_validation:
        raise CheckpointError(f"{output} holds a model picked on its validation cases (a run's best/); write the "
                              "average to a folder of its own")
    if not overwrite:
        raise CheckpointError(f"{output} holds a model; replace it with --overwrite (overwrite=True)")


def _check_one_design(cards: list[tuple[str, ModelCard]]) -> ModelCard:
    """The first model's card, once every card is of its design (but for the slice padding), none was picked on its
    validation cases and every split is per dataset; else a :class:`CheckpointError` naming the model."""
    (first_name, first), *others = cards
    for name, card in cards:
        if card.picked_on_validation:
            raise CheckpointError(f"model {name} was picked on its validation cases (a run's best/) or measured on "
                                  "them when shipped; average the runs' last/ folders, so held-out cases still "
                                  "measure the average")
        split = card.provenance.get("split", {})
        if not isinstance(split, dict) or not all(isinstance(part, dict) for part in split.values()):
            raise CheckpointError(f"model {name}'s card records its split as cards before per-dataset splits did; "
                                  "continue it one stage with `atriumseg train --init` first")
    for name, card in others:
        differ = []
        for part in ("architecture", "preprocessing", "postprocessing"):
            mine, theirs = getattr(card, part), getattr(first, part)
            differ += [f"{part}.{f.name} {getattr(mine, f.name)!r} against {getattr(theirs, f.name)!r}"
                       for f in dataclasses.fields(mine)
                       if f.name != "min_slice_size" and getattr(mine, f.name) != getattr(theirs, f.name)]
        if differ:
            raise CheckpointError(f"model {name} is of another design than {first_name} ({'; '.join(differ)}); only "
                                  "models of one design average")
    return first


def _check_distinct(states: list[tuple[str, dict[str, torch.Tensor]]]) -> None:
    """Refuse the same weights twice (a model given twice, or a copy of it): they would count double."""
    for i, (mine, state) in enumerate(states):
        for theirs, other in states[i + 1:]:
            if all(torch.equal(state[key], other[key]) for key in state):
                raise CheckpointError(f"models {mine} and {theirs} have the same weights; each model counts once")


def _check_no_stage_twice(averaging: dict) -> None:
    """Refuse a model with an average that already holds it: a training stage of one, past the stages all share
    (the ``averaging`` stage's own stages of each model), is also another's, so it would count double."""
    models = averaging["averaged"]
    owns = [{repr(stage) for stage in _every_stage(model["stages"])} for model in models]
    for i, mine in enumerate(owns):
        for j in range(i + 1, len(owns)):
            if mine & owns[j]:
                raise CheckpointError(f"models {models[i]['model']} and {models[j]['model']} share a training stage "
                                      "after the stages all share: one holds the other (an average of it?); each "
                                      "model counts once")


def _every_stage(stages: list[dict]) -> list[dict]:
    """``stages`` and, inside each averaging stage, every stage of the models it averaged."""
    found = []
    for stage in stages:
        found.append(stage)
        for model in stage.get("averaged", []):
            found += _every_stage(model.get("stages", []))
    return found


def _averaged_provenance(cards: dict[str, ModelCard], run: str, command: str) -> dict:
    """What the average's card says of how it was made: every model's training data, the split it implies, the
    fold when all trained on the same one (so fold averages cross-validate), the models averaged, the settings
    changed after training and the lineage."""
    splits = [card.provenance.get("split", {}) for card in cards.values()]
    unknown = any("split" not in card.provenance for card in cards.values())  # trained on cases it does not say
    configs = [card.provenance.get("config", {}) for card in cards.values()]
    folds = {(c.get("folds", 0), c.get("fold")) for c in configs}
    one_fold = all(s == splits[0] for s in splits) and len(folds) == 1 and configs[0].get("folds", 0) >= 2
    split = _merged_split(splits)
    if unknown:
        split = {name: {**part, "validation": []} for name, part in split.items()}
    counts = {name: {"train": len(part["train"]), "validation": len(part["validation"])}
              for name, part in split.items()}
    lineages = {name: lineage_of(card) for name, card in cards.items()}
    lineage = averaged_lineage(run, command, lineages, counts)
    starts = {story[0].get("started_from") if story else None for story in lineages.values()}
    if len(lineage) == 1 and (len(starts) != 1 or None in starts):
        log.warning("the models averaged share no training stage and no starting model: networks trained apart "
                    "seldom average into one that works; measure the average (atriumseg evaluate) before using it")
    notes = [{**note, "model": name} for name, card in cards.items()
             for note in card.provenance.get("set_after_training", [])]
    return {"data": _merged_data(cards), "split": split,
            "config": {"folds": configs[0]["folds"], "fold": configs[0].get("fold")} if one_fold else {},
            "averaged": list(cards), "command": command, "lineage": lineage,
            **({"set_after_training": notes} if notes else {})}


def _merged_data(cards: dict[str, ModelCard]) -> list[dict]:
    """Each dataset any model trained on, once, with its root, header fix, reference and licence (its share of
    the batches is each run's own, told by its stage's command); a dataset read with other header fixes by two
    models is refused, since its held-out cases would be read one way for both."""
    data: dict[str, dict] = {}
    for name, card in cards.items():
        for item in training_data(card.provenance):
            entry = {key: value for key, value in item.items() if key != "weight"}
            known = data.setdefault(entry.get("dataset"), entry)
            if known.get("header_orientation_fix") != entry.get("header_orientation_fix"):
                raise CheckpointError(
                    f"model {name} read dataset {entry.get('dataset')} with header fix "
                    f"{entry.get('header_orientation_fix')!r}, another model with "
                    f"{known.get('header_orientation_fix')!r}; only models that read their data alike average")
    return list(data.values())


def _merged_split(splits: list[dict]) -> dict:
    """Per dataset: the cases any model trained on; as validation, those some model held out and none trained on;
    as excluded, those every model with that dataset left out."""
    merged = {}
    for name in dict.fromkeys(name for split in splits for name in split):
        parts = [split[name] for split in splits if name in split]
        train = sorted({case for part in parts for case in part.get("train", [])})
        validation = sorted({case for part in parts for case in part.get("validation", [])} - set(train))
        excluded = set.intersection(*(set(part.get("excluded", [])) for part in parts)) - set(train)
        merged[name] = {"train": train, "validation": validation, "excluded": sorted(excluded)}
    return merged
