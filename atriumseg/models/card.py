"""The model card: everything inference needs besides the weights, as typed frozen dataclasses.

Torch-free, so the CLI can print a card instantly. The card is stored as JSON beside the
safetensors weights; ``FORMAT_VERSION`` changes whenever the meaning of a field changes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from atriumseg.geometry import validate_axcodes

FORMAT_VERSION = 1
PLANES = ("sagittal", "coronal", "axial")
_PLANE_AXIS = {"sagittal": "LR", "coronal": "AP", "axial": "SI"}


# Bounds a card must respect, checked before any network is built or memory allocated.
LIMITS: dict[str, Any] = {"in_channels": 31, "width": 512, "depth": 8, "context": 15, "min_slice_size": 1024, "spacing_mm": (0.05, 20.0)}


class CardError(ValueError):
    """A model card that is missing, malformed, or of an unknown format version."""


def _check_number(name: str, value: object, low: float, high: float, integer: bool = False) -> None:
    """Refuse a card value that is not a number (an integer where ``integer``) in ``[low, high]``."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise CardError(f"{name} must be {kind} in [{low}, {high}], got {value!r}")


@dataclass(frozen=True)
class Architecture:
    """Init arguments of :class:`atriumseg.models.UNet`."""

    in_channels: int = 1
    width: int = 64
    depth: int = 4

    @property
    def divisor(self) -> int:
        """Slices must be padded to a multiple of this size."""
        return 2 ** (self.depth - 1)


@dataclass(frozen=True)
class Preprocessing:
    """How a volume is put in front of the network.

    ``orientation`` is the anatomical frame (axis codes, e.g. ``"RAS"``) the network sees;
    ``plane`` is the anatomical slice plane; ``spacing`` the in-plane voxel size in mm;
    ``slice_spacing`` the distance between slices in mm (0 keeps the volume's own, so a model
    then sees neighbour slices as far apart as the scan has them); ``percentiles`` the intensity
    window mapped to [0, 1] per volume; ``context`` the neighbouring slices on each side stacked
    as channels; ``min_slice_size`` the in-plane size in voxels that smaller slices are zero-padded
    to (0: none), so a tight crop meets the network as training's padded crops did.
    """

    orientation: str = "RAS"
    plane: str = "sagittal"
    spacing: tuple[float, float] = (1.25, 1.25)
    percentiles: tuple[float, float] = (0.5, 99.5)
    context: int = 0
    slice_spacing: float = 0.0
    min_slice_size: int = 0

    @property
    def slice_dim(self) -> int:
        """Index of the slice axis among the spatial axes of the oriented volume."""
        letters = _PLANE_AXIS[self.plane]
        return next(i for i, code in enumerate(self.orientation) if code in letters)

    @property
    def pixdim(self) -> tuple[float, float, float]:
        """Target spacing for all three oriented axes; 0 keeps the slice axis' own spacing."""
        in_plane = iter(self.spacing)
        return tuple(float(self.slice_spacing) if i == self.slice_dim else float(next(in_plane)) for i in range(3))


@dataclass(frozen=True)
class Postprocessing:
    """Turning probabilities into a mask."""

    threshold: float = 0.5
    largest_component: bool = True


@dataclass(frozen=True)
class ModelCard:
    """A self-describing model: architecture, preprocessing, post-processing and provenance."""

    architecture: Architecture = field(default_factory=Architecture)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    postprocessing: Postprocessing = field(default_factory=Postprocessing)
    package_version: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        pre, arch = self.preprocessing, self.architecture
        if self.format_version != FORMAT_VERSION:
            raise CardError(
                f"model card format version {self.format_version} is not supported "
                f"(this atriumseg reads version {FORMAT_VERSION}); upgrade atriumseg or re-export the model"
            )
        _check_number("architecture.in_channels", arch.in_channels, 1, LIMITS["in_channels"], integer=True)
        _check_number("architecture.width", arch.width, 1, LIMITS["width"], integer=True)
        _check_number("architecture.depth", arch.depth, 2, LIMITS["depth"], integer=True)
        _check_number("preprocessing.context", pre.context, 0, LIMITS["context"], integer=True)
        _check_number("preprocessing.min_slice_size", pre.min_slice_size, 0, LIMITS["min_slice_size"], integer=True)
        for value in pre.spacing:
            _check_number("preprocessing.spacing", value, LIMITS["spacing_mm"][0], LIMITS["spacing_mm"][1])
        if len(pre.spacing) != 2:
            raise CardError(f"preprocessing.spacing must hold 2 in-plane sizes in mm, got {pre.spacing!r}")
        if pre.slice_spacing != 0:
            _check_number("preprocessing.slice_spacing", pre.slice_spacing, *LIMITS["spacing_mm"])
        if len(pre.percentiles) != 2 or not 0 <= pre.percentiles[0] < pre.percentiles[1] <= 100:
            raise CardError(f"preprocessing.percentiles must be 0 <= low < high <= 100, got {pre.percentiles!r}")
        if pre.plane not in PLANES:
            raise CardError(f"plane must be one of {PLANES}, got {pre.plane!r}")
        try:
            validate_axcodes(pre.orientation)
        except ValueError as err:
            raise CardError(f"preprocessing.{err}") from None
        if arch.in_channels != 2 * pre.context + 1:
            raise CardError(
                f"in_channels={arch.in_channels} does not match context={pre.context} "
                f"(expected {2 * pre.context + 1} channels)"
            )
        threshold = self.postprocessing.threshold
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold < 1.0:
            raise CardError(f"threshold must be a number in (0, 1), got {threshold!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """Validate and rebuild a card; unknown or missing fields raise :class:`CardError`."""
        try:
            return cls(
                architecture=Architecture(**data["architecture"]),
                preprocessing=Preprocessing(
                    **{
                        **data["preprocessing"],
                        "spacing": tuple(data["preprocessing"]["spacing"]),
                        "percentiles": tuple(data["preprocessing"]["percentiles"]),
                    }
                ),
                postprocessing=Postprocessing(**data["postprocessing"]),
                package_version=str(data.get("package_version", "")),
                provenance=dict(data.get("provenance", {})),
                format_version=int(data["format_version"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise CardError(f"malformed model card: {err}") from err

    def save(self, path: Path) -> None:
        """Write the card as indented JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> ModelCard:
        """Read and validate a JSON card."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise CardError(f"cannot read model card {path}: {err}") from err
        return cls.from_dict(data)
