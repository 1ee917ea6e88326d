"""A model card in words, for ``atriumseg info``: design, training data, validation figures, provenance."""

from __future__ import annotations

from atriumseg.models.card import ModelCard


def describe(card: ModelCard) -> str:
    """A few readable lines about the model: what it is, what it was trained on, how well it validated."""
    arch, pre, prov = card.architecture, card.preprocessing, card.provenance
    slices = f"{pre.slice_spacing:g} mm" if pre.slice_spacing else "the scan's own spacing"
    lines = [
        f"atriumseg model (package {card.package_version or 'unknown'})",
        f"  network: 2D U-Net, width {arch.width}, depth {arch.depth}, {arch.in_channels} input channel(s) "
        f"({pre.context} neighbour slice(s) each side)",
        f"  slices: {pre.plane} in {pre.orientation}, {pre.spacing[0]:g} x {pre.spacing[1]:g} mm in-plane, "
        f"{slices} apart; intensities scaled between percentiles {pre.percentiles[0]:g} and {pre.percentiles[1]:g}",
        f"  mask: probability > {card.postprocessing.threshold:g}"
        + (", largest component" if card.postprocessing.largest_component else ""),
    ]
    data = prov.get("data")
    if isinstance(data, dict):  # cards written before multi-dataset training
        data = [data]
    split = prov.get("split", {})
    figures = prov.get("validation_dice", {})
    for item in data or []:
        name = item.get("dataset", "?")
        part = split.get(name, split) if isinstance(split, dict) else {}
        counts = f"{len(part.get('train', []))} training / {len(part.get('validation', []))} validation cases"
        dice = f", validation Dice {figures[name]:.4f}" if name in figures else ""
        lines.append(f"  trained on {name} ({counts}{dice})")
        for key in ("reference", "licence"):
            if item.get(key):
                lines.append(f"    {key}: {item[key]}")
    if "overall" in figures:
        lines.append(f"  validation Dice overall (mean of the datasets' means): {figures['overall']:.4f}")
    if prov.get("training_seconds"):
        lines.append(f"  training: {prov.get('epochs', '?')} epochs, {prov['training_seconds'] / 60:.0f} min on "
                     f"{prov.get('device', '?')} ({prov.get('machine', '?')})")
    for key, label in (("command", "command"), ("licence", "licence")):
        if prov.get(key):
            lines.append(f"  {label}: {prov[key]}")
    return "\n".join(lines)
