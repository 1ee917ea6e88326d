"""The lineage on a card: every training stage that made a model, oldest first. Torch-free.

A run started with ``--init MODEL`` copies MODEL's lineage and appends its own stage, so a model
trained in several sessions keeps the whole story: the run, the model it started from, the minutes,
steps and device of each stage, and how many training and validation cases of each dataset it used.
"""

from __future__ import annotations

from atriumseg.models.card import ModelCard

NETWORK = ("plane", "width", "depth", "context")  # the run options that set the network a stage trained


def lineage_of(card: ModelCard) -> list[dict]:
    """The training stages that made the model of ``card``, oldest first; none for a card without training.

    A model trained before lineages were recorded counts as one stage described by its own provenance.
    """
    provenance = card.provenance
    if "lineage" in provenance:
        return list(provenance["lineage"])
    return [stage(provenance)] if "epochs" in provenance or "training_seconds" in provenance else []


def stage(provenance: dict) -> dict:
    """One training stage as the lineage records it, from the provenance of the run that made it: with the network it
    trained (``network``: plane, width, depth, neighbour slices), since ``--init`` may widen a model from one stage
    to the next (not on stages recorded before it was)."""
    split, config = provenance.get("split", {}), provenance.get("config", {})
    network = {key: config[key] for key in NETWORK if key in config}
    return {
        "run": config.get("output"),
        "started_from": config.get("init"),
        "command": provenance.get("command", ""),
        "epochs": provenance.get("epochs"),
        "steps": provenance.get("steps"),
        "minutes": round(provenance.get("training_seconds", 0.0) / 60.0, 1),
        "device": provenance.get("device"),
        "data": {name: {"train": len(s.get("train", [])), "validation": len(s.get("validation", []))}
                 for name, s in split.items()},
        **({"network": network} if network else {}),
    }


def averaged_lineage(run: str, command: str, lineages: dict[str, list[dict]], data: dict[str, dict[str, int]]
                     ) -> list[dict]:
    """The lineage of a model whose weights are the average of models with ``lineages`` (named by their models):
    the stages they all share, oldest first, then one stage of the averaging (``run``, its ``command``, the
    training and validation case counts ``data``) that keeps each model's own stages after the shared ones, so no
    stage is lost."""
    shared = 0
    stories = list(lineages.values())
    while all(len(story) > shared for story in stories) and all(s[shared] == stories[0][shared] for s in stories):
        shared += 1
    averaging = {"run": run, "started_from": None, "command": command, "data": data,
                 "averaged": [{"model": model, "stages": story[shared:]} for model, story in lineages.items()]}
    return [*stories[0][:shared], averaging]
