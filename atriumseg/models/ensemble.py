"""Ensemble models: a model folder whose card names member model folders, combined on the input grid.

An ensemble folder holds a ``card.json`` with a ``members`` list and one ordinary model folder
(card + safetensors weights) per member, as a direct subfolder::

    tri_planar/
        card.json        {"members": ["axial", "sagittal", "coronal"], "postprocessing": {...}, ...}
        axial/           card.json + model.safetensors
        sagittal/        card.json + model.safetensors
        coronal/         card.json + model.safetensors

The first member locates the atrium; every member segments it in its own plane and preprocessing;
their probabilities are combined on the input grid (the ensemble's ``postprocessing.fusion``: their mean or
their mean logit), then the ensemble's own post-processing (threshold, largest component) makes the mask.
Loading reads JSON and safetensors only.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from atriumseg.models.card import FORMAT_VERSION, CardError, ModelCard, Postprocessing
from atriumseg.models.checkpoint import CARD_NAME, WEIGHTS_NAME, CheckpointError, load_model, model_folder
from atriumseg.models.unet import UNet
from atriumseg.pipeline.io.writing import write_atomically

MAX_MEMBERS = 16


@dataclass(frozen=True)
class EnsembleCard:
    """The card of an ensemble: its members' subfolder names, in order (the first locates the atrium), the
    post-processing of the combined probabilities (with the fusion rule), the package version and the provenance."""

    members: tuple[str, ...]
    postprocessing: Postprocessing = field(default_factory=Postprocessing)
    package_version: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.format_version != FORMAT_VERSION:
            raise CardError(
                f"ensemble card format version {self.format_version} is not supported "
                f"(this atriumseg reads version {FORMAT_VERSION}); upgrade atriumseg or re-export the model"
            )
        if isinstance(self.members, (str, bytes)) or not 1 <= len(self.members) <= MAX_MEMBERS:
            raise CardError(f"members must list 1 to {MAX_MEMBERS} member folder names, got {self.members!r}")
        object.__setattr__(self, "members", tuple(self.members))
        for name in self.members:
            if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name:
                raise CardError(f"member {name!r} must name a subfolder of the ensemble folder (no path, no '..')")
            if name.lower() == CARD_NAME:  # Card.json is that file too where names ignore case (macOS, Windows)
                raise CardError(f"member {name!r} would be the ensemble's own card file; give the member another name")
        if len(set(self.members)) != len(self.members):
            raise CardError(f"members must be distinct, got {list(self.members)}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {**asdict(self), "members": list(self.members), "postprocessing": self.postprocessing.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnsembleCard:
        """Validate and rebuild an ensemble card; malformed or out-of-range fields raise :class:`CardError`."""
        try:
            return cls(
                members=tuple(data["members"]) if isinstance(data["members"], list) else data["members"],
                postprocessing=Postprocessing(**data.get("postprocessing", {})),
                package_version=str(data.get("package_version", "")),
                provenance=dict(data.get("provenance", {})),
                format_version=int(data["format_version"]),
            )
        except CardError:
            raise
        except (KeyError, TypeError, ValueError) as err:
            raise CardError(f"malformed ensemble card: {err}") from err

    def save(self, folder: Path) -> Path:
        """Write ``folder/card.json`` atomically; the members' folders are saved by ``save_model``."""
        folder = Path(folder)
        write_atomically(folder / CARD_NAME, lambda tmp: tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n"))
        return folder


def _card_data(folder: Path) -> dict[str, Any] | None:
    """The JSON of ``folder/card.json``, or None when there is none or it is not a JSON object."""
    try:
        data = json.loads((Path(folder) / CARD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # unreadable, not UTF-8, not JSON, nested beyond the parser
        return None
    return data if isinstance(data, dict) else None


def is_ensemble(folder: Path) -> bool:
    """Whether ``folder`` is an ensemble: its card has a ``members`` list."""
    data = _card_data(folder) if Path(folder).is_dir() else None
    return data is not None and "members" in data


def first_member(folder: Path) -> Path:
    """The folder of the one network that frames a volume first: an ensemble's first member (the one that locates
    the atrium), or ``folder`` itself when it holds one network."""
    return folder / load_ensemble_card(folder).members[0] if is_ensemble(folder) else folder


def load_ensemble_card(folder: Path) -> EnsembleCard:
    """The validated card of an ensemble folder, without loading any member; a :class:`CheckpointError` says why not."""
    folder = Path(folder)
    data = _card_data(folder)
    if data is None:
        raise CheckpointError(f"ensemble {folder}: missing or unreadable {CARD_NAME}")
    try:
        return EnsembleCard.from_dict(data)
    except CardError as err:
        raise CheckpointError(f"ensemble {folder}: {err}") from err


def load_ensemble(folder: Path) -> tuple[list[tuple[UNet, ModelCard]], EnsembleCard]:
    """Every member's network and card, in the card's order, and the ensemble card.

    Raises :class:`CheckpointError` naming the ensemble and the member: a malformed ensemble card, a member
    folder that is missing or is itself an ensemble, a member whose card or weights ``load_model`` refuses.
    """
    folder = Path(folder)
    card = load_ensemble_card(folder)
    models = []
    for name in card.members:
        member = folder / name
        if not member.is_dir():
            raise CheckpointError(f"ensemble {folder}: member {name!r} has no folder {member}")
        if is_ensemble(member):
            raise CheckpointError(f"ensemble {folder}: member {name!r} is itself an ensemble; list its members instead")
        try:
            models.append(load_model(member))
        except CheckpointError as err:
            raise CheckpointError(f"ensemble {folder}: member {name!r}: {err}") from err
    return models, card


def assemble_ensemble(
    folder: Path, members: dict[str, Path], postprocessing: Postprocessing | None = None,
    package_version: str = "", provenance: dict[str, Any] | None = None,
) -> Path:
    """Make ``folder`` an ensemble of ``members`` (name -> model folder, the first locates the atrium).

    Each member's card and weights are copied into ``folder/NAME``; the card records where every
    member came from beside ``provenance``. Every member is loaded before anything is written, so a
    member :func:`load_ensemble` would refuse stops it with nothing copied (:class:`CheckpointError`).
    """
    folder = Path(folder)
    sources: dict[str, Path] = {}
    for name, path in members.items():  # every member is checked before anything is written
        try:
            sources[name] = model_folder(path)  # runs/a/card.json names the folder runs/a
            if is_ensemble(sources[name]):
                raise CheckpointError(f"{path} is itself an ensemble; list its members instead")
            load_model(sources[name])
        except CheckpointError as err:
            raise CheckpointError(f"member {name!r}: {err}") from err
    card = EnsembleCard(tuple(sources), postprocessing or Postprocessing(), package_version,
                        {**(provenance or {}), "member_sources": {n: str(p) for n, p in sources.items()}})
    for name, source in sources.items():
        for part in (WEIGHTS_NAME, CARD_NAME):
            write_atomically(folder / name / part, lambda tmp, src=source / part: shutil.copyfile(src, tmp))
    card.save(folder)
    return folder
