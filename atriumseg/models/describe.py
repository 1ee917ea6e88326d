"""A model card in words, for ``atriumseg info``: design, training data, validation and cross-validated
figures, the lineage of training stages, provenance."""

from __future__ import annotations

from typing import TYPE_CHECKING

from atriumseg.models.card import FUSIONS, ModelCard, training_data
from atriumseg.models.checkpoint import build_network
from atriumseg.models.lineage import lineage_of

if TYPE_CHECKING:
    from atriumseg.models.ensemble import EnsembleCard


def describe(card: ModelCard) -> str:
    """A few readable lines about the model: what it is, what it was trained on, how well it validated."""
    arch, pre, prov = card.architecture, card.preprocessing, card.provenance
    slices = f"{pre.slice_spacing:g} mm" if pre.slice_spacing else "the scan's own spacing"
    parameters = sum(p.numel() for p in build_network(card).parameters())
    lines = [
        f"atriumseg model (made by atriumseg {card.package_version or 'of an unknown version'})",
        f"  network: 2D U-Net, width {arch.width}, depth {arch.depth} ({parameters:,} parameters), "
        f"{arch.in_channels} input channel(s) "
        f"({pre.context} neighbour slice(s) each side)",
        f"  slices: {pre.plane} in {pre.orientation}, {pre.spacing[0]:g} x {pre.spacing[1]:g} mm in-plane, "
        f"{slices} apart; intensities scaled between percentiles {pre.percentiles[0]:g} and {pre.percentiles[1]:g}"
        + (f", capped first at the upper one of the central {pre.centre_clip:g} of each axis" if pre.centre_clip
           else ""),
        f"  mask: probability > {card.postprocessing.threshold:g}"
        + (", largest component" if card.postprocessing.largest_component else ""),
        *_data_lines(prov),
        *_cross_validation_lines(prov.get("cross_validation")),
        *_lineage_lines(lineage_of(card)),
        *_set_after_training_lines(prov),
    ]
    for key in ("command", "licence"):
        if prov.get(key):
            lines.append(f"  {key}: {prov[key]}")
    return "\n".join(lines)


def describe_ensemble(ensemble: EnsembleCard, members: dict[str, ModelCard]) -> str:
    """An ensemble in words: how its members' probabilities become the mask, then each member described."""
    post, prov = ensemble.postprocessing, ensemble.provenance
    lines = [
        f"atriumseg ensemble of {len(members)} models (made by atriumseg "
        f"{ensemble.package_version or 'of an unknown version'}): '{ensemble.members[0]}' locates the atrium, every "
        "member segments it",
        f"  fusion of the members' probabilities ({post.fusion}): {FUSIONS[post.fusion]}",
        f"  mask: fused probability > {post.threshold:g}" + (", largest component" if post.largest_component else ""),
        *_ensemble_validation_lines(prov.get("validation_dice")),
        *_cross_validation_lines(prov.get("cross_validation")),
    ]
    if prov.get("licence"):
        lines.append(f"  licence: {prov['licence']}")
    for name, card in members.items():
        lines.append(f"member '{name}':")
        lines.extend(f"  {line}" for line in describe(card).splitlines())
    return "\n".join(lines)


def _set_after_training_lines(prov: dict) -> list[str]:
    """Card fields changed after training (``tools/set_card.py``), one line each."""
    return [f"  set after training: {n['field']} {n['from']:g} -> {n['to']:g} (atriumseg {n['package_version']}"
            + (f", on the averaged model {n['model']})" if n.get("model") else ")")
            for n in prov.get("set_after_training", [])]


def _data_lines(prov: dict) -> list[str]:
    """Each training dataset with its split, validation Dice and attribution."""
    data = training_data(prov)
    split = prov.get("split", {})
    figures = prov.get("validation_dice", {})
    lines = []
    for item in data:
        name = item.get("dataset", "?")
        part = split.get(name, split) if isinstance(split, dict) else {}
        counts = f"{len(part.get('train', []))} training / {len(part.get('validation', []))} validation cases"
        dice = f", validation Dice {figures[name]:.4f}" if name in figures else ""
        lines.append(f"  trained on {name} ({counts}{dice})")
        lines += [f"    {key}: {item[key]}" for key in ("reference", "licence") if item.get(key)]
    if "overall" in figures:
        lines.append(f"  validation Dice overall (mean of the datasets' means): {figures['overall']:.4f}")
    return lines


def _ensemble_validation_lines(figures: dict | None) -> list[str]:
    """The whole ensemble's validation Dice per dataset, measured on its members' held-out cases."""
    if not isinstance(figures, dict) or not figures:
        return []
    listed = ", ".join(f"{name} {dice:.4f}" for name, dice in figures.items())
    return [f"  validation Dice of the ensemble (the members' held-out cases): {listed}"]


def _cross_validation_lines(record: dict | None) -> list[str]:
    """The expected accuracy per protocol: out-of-fold figures of ``provenance.cross_validation``."""
    if not isinstance(record, dict) or not record.get("per_dataset"):
        return []
    lines = [f"  expected accuracy, cross-validated ({record.get('folds', '?')} fold models of this model's recipe, "
             "each case scored by the fold model that did not train on it):"]
    for name, s in record["per_dataset"].items():
        worst = f", worst {s['dice_worst']:.4f}" if "dice_worst" in s else ""
        lines.append(f"    {name}: {s.get('cases', '?')} cases, Dice mean {s['dice_mean']:.4f}{worst}, "
                     f"mean absolute volume error {s['abs_volume_error_mean_pct']:.1f}%")
    if record.get("command"):
        lines.append(f"    made by: {record['command']}")
    return lines


def _lineage_lines(lineage: list[dict]) -> list[str]:
    """One line per training stage, oldest first: run, starting model, minutes, steps, network, data; an averaging
    stage (``atriumseg average``) lists each averaged model's own stages under it."""
    if not lineage:
        return []
    return [f"  lineage ({len(lineage)} stage(s), oldest first):", *_stage_lines(lineage, "    ")]


def _stage_lines(stages: list[dict], indent: str) -> list[str]:
    """``stages`` numbered from 1, each on a line at ``indent``; an averaging stage's models below it, deeper."""
    lines = []
    for number, stage in enumerate(stages, 1):
        data = ", ".join(f"{name} {d.get('train', '?')}+{d.get('validation', '?')}"
                         for name, d in (stage.get("data") or {}).items())
        if "averaged" in stage:
            lines.append(f"{indent}{number}. run {stage.get('run') or '?'}, the mean of the weights of "
                         f"{len(stage['averaged'])} models; data (training+validation cases): {data or '?'}")
            for model in stage["averaged"]:
                own = model.get("stages") or []
                after = f" after stage {number - 1}" if number > 1 else ""
                lines.append(f"{indent}   {model.get('model')}: {len(own)} stage(s) of its own{after}")
                lines += _stage_lines(own, indent + "      ")
            continue
        network = stage.get("network") or {}
        trained = (f" ({network.get('plane', '?')}, width {network.get('width', '?')}, depth "
                   f"{network.get('depth', '?')}, context {network.get('context', '?')})" if network else "")
        lines.append(f"{indent}{number}. run {stage.get('run') or '?'}, from {stage.get('started_from') or 'scratch'}, "
                     f"{stage.get('epochs', '?')} epochs, {stage.get('steps', '?')} steps, {stage.get('minutes', '?')} "
                     f"min on {stage.get('device') or '?'}{trained}; data (training+validation cases): {data or '?'}")
    return lines
