"""A model folder as a MONAI bundle that MONAI's own runner, MONAI Label and MONAI Deploy can take.

Layout (MONAI Bundle specification)::

    BUNDLE/configs/{metadata,inference}.json   models/model.pt (state dict), models/model.ts (TorchScript)
    BUNDLE/scripts/{unet,context}.py           docs/README.md   LICENSE

The custom code ships in ``scripts/`` (the model zoo's way): verbatim copies of atriumseg's U-Net
and neighbour stacking, so running the bundle needs MONAI, torch and nibabel, not atriumseg. The
weights come from safetensors; ``model.pt`` holds tensors only (``torch.load(..., weights_only=True)``
reads it) and ``model.ts`` carries both configs as extra files, as ``monai.bundle ckpt_export`` does.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from importlib import metadata as package_metadata
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import torch
from monai.data import save_net_with_metadata

from atriumseg._version import __version__
from atriumseg.models.card import ModelCard
from atriumseg.models.checkpoint import load_model, resolve_model_path
from atriumseg.models.ensemble import is_ensemble, load_ensemble_card
from atriumseg.pipeline.export.bundle_configs import RUNTIME_PACKAGES, SCRIPTS, inference_config, metadata

logger = logging.getLogger(__name__)

# Modules copied into scripts/: (source package, file). Each must import nothing from atriumseg.
SCRIPT_SOURCES = (("atriumseg.models", "unet.py"), ("atriumseg.transforms", "context.py"))
_PACKAGES = ("monai", "torch", "numpy", *RUNTIME_PACKAGES)


class BundleExportError(ValueError):
    """A bundle that cannot be written where asked, with the reason and what to do."""


def export_monai_bundle(output: str | Path, model: str | Path | None = None, overwrite: bool = False) -> Path:
    """Write the model folder ``model`` (None: the built-in model) as a MONAI bundle in ``output``.

    The bundle is built in a temporary folder beside ``output`` and moved into place, so a failed
    export leaves nothing half-written. An existing non-empty ``output`` is refused unless
    ``overwrite``, which replaces the bundle's own files and leaves any others; an ensemble is refused
    (a bundle runs one network), naming a member to export. Returns ``output``.
    """
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise BundleExportError(f"bundle folder {output}: exists and is not a folder; choose another path")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise BundleExportError(f"bundle folder {output}: not empty; choose an empty folder or pass overwrite")
    folder = resolve_model_path(None if model is None else Path(model))
    if is_ensemble(folder):
        members = load_ensemble_card(folder).members
        raise BundleExportError(
            f"model {folder}: an ensemble of {len(members)} members ({', '.join(members)}), and a bundle holds one "
            f"network; export a member instead, e.g. {folder / members[0]}"
        )
    network, card = load_model(folder)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        _write_bundle(staging, network, card)
        _move_into(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("MONAI bundle written to %s", output)
    return output


def package_versions() -> dict[str, str]:
    """Versions of the packages the bundle names, as installed here (a missing optional one is left out)."""
    versions = {"atriumseg": __version__}
    for name in _PACKAGES:
        try:
            versions[name] = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            continue
    return versions


def _write_bundle(folder: Path, network: torch.nn.Module, card: ModelCard) -> None:
    """Every file of the bundle into ``folder``."""
    versions = package_versions()
    meta = metadata(card, versions, bundle_version=card.package_version or __version__)
    config = inference_config(card)
    _write_json(folder / "configs" / "metadata.json", meta)
    _write_json(folder / "configs" / "inference.json", config)
    _write_scripts(folder / SCRIPTS)
    _write_models(folder / "models", network, meta, config)
    _write_docs(folder, card, meta)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _write_scripts(folder: Path) -> None:
    """Verbatim copies of the modules the configs name, refusing one that would need atriumseg itself."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "__init__.py").write_text(f'"""Custom code of this bundle, copied from atriumseg {__version__}."""\n')
    for package, name in SCRIPT_SOURCES:
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


def _write_docs(folder: Path, card: ModelCard, meta: dict[str, Any]) -> None:
    """``docs/README.md`` and ``LICENSE`` from the templates beside this module."""
    templates = resources.files("atriumseg.pipeline.export").joinpath("templates")
    pre, post = card.preprocessing, card.postprocessing
    values = {
        "version": meta["version"],
        "atriumseg_version": __version__,
        "orientation": pre.orientation,
        "plane": pre.plane,
        "pixdim": " x ".join(f"{v:g}" for v in pre.pixdim),
        "low": f"{pre.percentiles[0]:g}",
        "high": f"{pre.percentiles[1]:g}",
        "min_slice_size": str(pre.min_slice_size),
        "divisor": str(card.architecture.divisor),
        "channels": str(card.architecture.in_channels),
        "context": str(pre.context),
        "threshold": f"{post.threshold:g}",
        "validation": _validation_lines(card),
        "datasets": "\n".join(f"- **{d['dataset']}**: {d['reference']}; licence: {d['licence']}"
                              for d in meta["datasets"]) or "- none stated on this model's card",
        "licence": meta["licence"] or "no licence is stated on this model's card; ask the model's owner",
    }
    docs = folder / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "README.md").write_text(Template(templates.joinpath("README.md").read_text()).substitute(values))
    (folder / "LICENSE").write_text(Template(templates.joinpath("LICENSE").read_text()).substitute(values))


def _validation_lines(card: ModelCard) -> str:
    """The card's validation Dice per dataset as Markdown list items (or a line saying there is none)."""
    figures = card.provenance.get("validation_dice", {})
    cases = card.provenance.get("validation", {})
    if not figures:
        return "- no validation figures on this model's card"
    lines = []
    for name, dice in figures.items():
        count = len(cases.get(name, {}))
        lines.append(f"- {name}: mean Dice {dice:.3f}" + (f" over {count} cases" if count else ""))
    return "\n".join(lines)


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
