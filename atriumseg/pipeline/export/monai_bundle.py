"""A model folder as a MONAI bundle that MONAI's own runner, MONAI Label and MONAI Deploy can take.

Layout (MONAI Bundle specification)::

    BUNDLE/configs/{metadata,inference}.json   models/model.pt (state dict), models/model.ts (TorchScript)
    BUNDLE/scripts/{unet,context}.py           docs/README.md   LICENSE

The custom code ships in ``scripts/`` (the model zoo's way): verbatim copies of atriumseg's U-Net
and neighbour stacking, so running the bundle needs MONAI, torch and nibabel, not atriumseg. An
ensemble ships ``scripts/{unet,planes}.py`` instead: one ``PlaneEnsemble`` network runs every member
in its plane and averages their probabilities. A card with ``centre_clip`` adds ``scripts/intensity.py``
(``ClipToCentred``). The weights come from safetensors; ``model.pt`` holds
tensors only (``torch.load(..., weights_only=True)`` reads it) and ``model.ts`` carries both configs
as extra files, as ``monai.bundle ckpt_export`` does.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, replace
from importlib import metadata as package_metadata
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import torch
from monai.data import save_net_with_metadata

from atriumseg._version import __version__
from atriumseg.defaults import BATCH_SIZE
from atriumseg.models.card import ModelCard, training_data
from atriumseg.models.checkpoint import load_model, resolve_model_path
from atriumseg.models.ensemble import is_ensemble, load_ensemble
from atriumseg.models.planes import PlaneEnsemble
from atriumseg.pipeline.export.bundle_configs import (
    RUNTIME_PACKAGES,
    SCRIPTS,
    inference_config,
    metadata,
    plane_ensemble_arguments,
)
from atriumseg.pipeline.io.writing import temporary_path
from atriumseg.transforms.preprocessing import frame_key

logger = logging.getLogger(__name__)

# Modules copied into scripts/: (source package, file), for one network and for an ensemble. Each must import
# nothing from atriumseg.
SCRIPT_SOURCES = (("atriumseg.models", "unet.py"), ("atriumseg.transforms", "context.py"))
ENSEMBLE_SCRIPT_SOURCES = (("atriumseg.models", "unet.py"), ("atriumseg.models", "planes.py"))
INTENSITY_SOURCE = ("atriumseg.transforms", "intensity.py")  # for a card with centre_clip
_PACKAGES = ("monai", "torch", "numpy", *RUNTIME_PACKAGES)


class BundleExportError(ValueError):
    """A bundle that cannot be written where asked, with the reason and what to do."""


@dataclass(frozen=True)
class _Exported:
    """What a bundle runs: the network, the card of its first member carrying the whole model's post-processing
    and provenance, the other members' cards (an ensemble), and the atriumseg card(s) ``metadata.json`` records."""

    network: torch.nn.Module
    card: ModelCard
    members: tuple[ModelCard, ...] = ()
    record: dict[str, Any] | None = None


def export_monai_bundle(output: str | Path, model: str | Path | None = None, overwrite: bool = False) -> Path:
    """Write the model folder ``model`` (None: the built-in model) as a MONAI bundle in ``output``.

    The bundle is built in a temporary folder beside ``output`` and moved into place, so a failed
    export leaves nothing half-written. An existing non-empty ``output`` is refused unless
    ``overwrite``, which replaces the bundle's own files and leaves any others. An ensemble becomes one
    ``PlaneEnsemble`` network; its members must frame the volume alike (orientation, spacing, intensity
    window), since the bundle resamples it once. Returns ``output``.
    """
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise BundleExportError(f"bundle folder {output}: exists and is not a folder; choose another path")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise BundleExportError(
            f"bundle folder {output}: not empty; choose an empty folder or pass overwrite=True (--overwrite)"
        )
    folder = resolve_model_path(None if model is None else Path(model))
    exported = _ensemble(folder) if is_ensemble(folder) else _Exported(*load_model(folder))
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = temporary_path(output)  # a hidden sibling, made as any folder is (umask), not mkdtemp's 0700
    staging.mkdir()
    try:
        _write_bundle(staging, exported)
        _move_into(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("MONAI bundle written to %s", output)
    return output


def _ensemble(folder: Path) -> _Exported:
    """An ensemble folder as one ``PlaneEnsemble``; members framing the volume differently are refused."""
    models, ensemble = load_ensemble(folder)
    names, cards = ensemble.members, [card for _, card in models]
    if ensemble.postprocessing.fusion != "mean" and len(models) > 1:
        raise BundleExportError(
            f"model {folder}: fusion {ensemble.postprocessing.fusion!r} is not exported: a bundle combines its "
            "members on their own grid before returning to the input's, which only the mean survives unchanged "
            "(atriumseg combines them on the input's grid); assemble the members with --fusion mean to export them"
        )
    for name, card in zip(names[1:], cards[1:], strict=True):
        if frame_key(card) != frame_key(cards[0]):
            raise BundleExportError(
                f"model {folder}: member {name!r} frames the volume differently from {names[0]!r} (orientation, "
                f"spacing or intensity window: {frame_key(card)} against {frame_key(cards[0])}), and a bundle "
                "resamples the volume once; export each member on its own instead"
            )
    datasets = {entry.get("dataset"): entry for card in cards for entry in training_data(card.provenance)}
    licences = dict.fromkeys(card.provenance.get("licence", "") for card in cards if card.provenance.get("licence"))
    provenance = {"data": list(datasets.values()), "licence": "; ".join(licences), **ensemble.provenance}
    first = replace(cards[0], postprocessing=ensemble.postprocessing, provenance=provenance,
                    package_version=ensemble.package_version or cards[0].package_version)
    # one member: its plain network, sliced by MONAI's SliceInferer as any single model
    network = models[0][0] if len(models) == 1 else PlaneEnsemble(
        [net for net, _ in models], **plane_ensemble_arguments(cards), batch_size=BATCH_SIZE
    )
    record = {"ensemble": ensemble.to_dict(), "members": {n: c.to_dict() for n, c in zip(names, cards, strict=True)}}
    return _Exported(network, first, tuple(cards[1:]), record)


def package_versions() -> dict[str, str]:
    """Versions of the packages the bundle names, as installed here (a missing optional one is left out)."""
    versions = {"atriumseg": __version__}
    for name in _PACKAGES:
        try:
            versions[name] = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            continue
    return versions


def _write_bundle(folder: Path, exported: _Exported) -> None:
    """Every file of the bundle into ``folder``."""
    card, members = exported.card, exported.members
    versions = package_versions()
    meta = metadata(card, versions, bundle_version=card.package_version or __version__, members=members,
                    record=exported.record)
    config = inference_config(card, members)
    sources = ENSEMBLE_SCRIPT_SOURCES if members else SCRIPT_SOURCES
    if card.preprocessing.centre_clip:
        sources = (*sources, INTENSITY_SOURCE)
    _write_json(folder / "configs" / "metadata.json", meta)
    _write_json(folder / "configs" / "inference.json", config)
    _write_scripts(folder / SCRIPTS, sources)
    _write_models(folder / "models", exported.network, meta, config)
    _write_docs(folder, exported, meta, sources)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _write_scripts(folder: Path, sources: tuple[tuple[str, str], ...]) -> None:
    """Verbatim copies of the modules the configs name, refusing one that would need atriumseg itself."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "__init__.py").write_text(f'"""Custom code of this bundle, copied from atriumseg {__version__}."""\n')
    for package, name in sources:
        source = resources.files(package).joinpath(name).read_text()
        if "from atriumseg" in source or "import atriumseg" in source:
            raise BundleExportError(
                f"{package}.{name} imports atriumseg, so its copy in the bundle's {SCRIPTS}/ would not run "
                "without atriumseg installed; keep that module free of atriumseg imports"
            )
        (folder / name).write_text(source)


def _write_models(folder: Path, network: torch.nn.Module, meta: dict[str, Any], config: dict[str, Any]) -> None:
    """``model.pt``: the state dict (tensors only); ``model.ts``: TorchScript with both configs inside."""
    folder.mkdir(parents=True, exist_ok=True)
    network = network.to("cpu").eval()
    torch.save({k: v.detach().contiguous() for k, v in network.state_dict().items()}, folder / "model.pt")
    scripted = torch.jit.script(network)
    extra = {"inference.json": json.dumps(config).encode()}
    save_net_with_metadata(
        scripted, str(folder / "model.ts"), include_config_vals=False, meta_values=meta, more_extra_files=extra
    )


def _write_docs(folder: Path, exported: _Exported, meta: dict[str, Any], sources: tuple[tuple[str, str], ...]) -> None:
    """``docs/README.md`` and ``LICENSE`` from the templates beside this module."""
    templates = resources.files("atriumseg.pipeline.export").joinpath("templates")
    card, cards = exported.card, (exported.card, *exported.members)
    pre, post = card.preprocessing, card.postprocessing
    values = {
        "version": meta["version"],
        "atriumseg_version": __version__,
        "orientation": pre.orientation,
        "pixdim": " x ".join(f"{v:g}" for v in pre.pixdim),
        "low": f"{pre.percentiles[0]:g}",
        "high": f"{pre.percentiles[1]:g}",
        "capped": (f"intensities capped first at the {pre.percentiles[1]:g} percentile of the volume's central "
                   f"{pre.centre_clip:g} of each axis (`scripts.intensity.ClipToCentred`), then " if pre.centre_clip
                   else ""),
        "slicing": _slicing_steps(cards),
        "copies": " and ".join(f"`{package.replace('.', '/')}/{name}`" for package, name in sources),
        "torchscript": _torchscript_io(cards),
        "threshold": f"{post.threshold:g}",
        "cleanup": "`KeepLargestConnectedComponentd`, " if post.largest_component else "",
        "validation": _validation_lines(card),
        "datasets": "\n".join(f"- **{d['dataset']}**: {d['reference']}; licence: {d['licence']}"
                              for d in meta["datasets"]) or "- none stated on this model's card",
        "licence": meta["licence"] or "no licence is stated on this model's card; ask the model's owner",
    }
    docs = folder / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "README.md").write_text(Template(templates.joinpath("README.md").read_text()).substitute(values))
    (folder / "LICENSE").write_text(Template(templates.joinpath("LICENSE").read_text()).substitute(values))


def _slicing_steps(cards: tuple[ModelCard, ...]) -> str:
    """Steps 4 to 6 of the docs' preprocessing list: how the slices reach the network(s)."""
    if len(cards) == 1:
        pre, divisor = cards[0].preprocessing, cards[0].architecture.divisor
        return (
            f"4. `SpatialPadd` of slices smaller than {pre.min_slice_size} px, `DivisiblePadd` to a multiple of "
            f"{divisor};\n"
            f"5. `scripts.context.StackNeighboursd`: each {pre.plane} slice with {pre.context} neighbour(s) on each "
            f"side\n   as {pre.channels} channels (2.5D context; edge slices repeat);\n"
            f"6. `SliceInferer` runs the 2D U-Net (`scripts.unet.UNet`) on every {pre.plane} slice;"
        )
    members = "; ".join(
        f"{c.preprocessing.plane}: {c.preprocessing.context} neighbour(s) each side, slices padded to "
        f"{c.preprocessing.min_slice_size} px and a multiple of {c.architecture.divisor}" for c in cards
    )
    return (
        "4. `SimpleInferer` runs `scripts.planes.PlaneEnsemble` on the whole volume: each member U-Net\n"
        "   (`scripts.unet.UNet`) zero-pads its own in-plane axes and sees every slice of its own plane with its\n"
        f"   neighbours as channels (edge slices repeat), {BATCH_SIZE} slices per forward pass ({members});\n"
        "5. each member's probabilities are cropped back to the volume's grid and averaged;\n"
        "6. the network returns the logit of that mean;"
    )


def _torchscript_io(cards: tuple[ModelCard, ...]) -> str:
    """The TorchScript network's input and output, for the docs."""
    if len(cards) == 1:
        arch = cards[0].architecture
        return (f"input `(B, {arch.in_channels}, H, W)` with H and W multiples of {arch.divisor}, output "
                "`(B, 1, H, W)` logits")
    return ("input `(B, 1, X, Y, Z)`, the volume in the members' frame (not padded); output `(B, 1, X, Y, Z)`, "
            "the logits of the members' mean probability")


def _validation_lines(card: ModelCard) -> str:
    """The card's figures as Markdown list items: the cross-validated expected accuracy per dataset, then the
    held-out validation Dice per dataset (or a line saying there is neither)."""
    record = card.provenance.get("cross_validation") or {}
    figures = card.provenance.get("validation_dice", {})
    cases = card.provenance.get("validation", {})
    lines = [
        f"- {name}, cross-validated ({record.get('folds', '?')} folds, each case scored by the fold model that did "
        f"not train on it): mean Dice {s['dice_mean']:.3f} over {s.get('cases', '?')} cases, mean absolute volume "
        f"error {s['abs_volume_error_mean_pct']:.1f}%"
        for name, s in record.get("per_dataset", {}).items()
    ]
    for name, dice in figures.items():
        count = len(cases.get(name, {}))
        lines.append(f"- {name}, held-out validation: mean Dice {dice:.3f}" + (f" over {count} cases" if count else ""))
    return "\n".join(lines) or "- no validation figures on this model's card"


def _move_into(staging: Path, output: Path) -> None:
    """Move the staged bundle to ``output``: a rename when it is new, file by file over an existing one."""
    if not output.exists() or not any(output.iterdir()):
        if output.exists():
            output.rmdir()
        staging.rename(output)
        return
    for path in sorted(staging.rglob("*")):
        if path.is_file():
            target = output / path.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            path.replace(target)
