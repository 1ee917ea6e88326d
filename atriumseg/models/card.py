"""The model card: everything inference needs besides the weights, as typed frozen dataclasses.

A card is a :class:`ModelDesign` (architecture, preprocessing, post-processing: each part checks
its own values when it is built) plus the package version and the provenance. :data:`BUILT_IN`
is the design of the built-in model's axial member (its coronal member is the same in the coronal
plane), the one place it is written down; the parts' defaults are its values, and training, the
CLI and ``atriumseg.defaults`` read it from here.

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
SPACING_MM = (0.05, 20.0)  # voxel sizes a card may ask for, in mm


class CardError(ValueError):
    """A model card that is missing, malformed, or of an unknown format version."""


def training_data(provenance: dict[str, Any]) -> list[dict[str, Any]]:
    """A card provenance's training datasets, one dict each: cards written before multi-dataset training hold one
    dict, not a list (what is not a dict is left out)."""
    data = provenance.get("data") or []
    return [item for item in ([data] if isinstance(data, dict) else data) if isinstance(item, dict)]


def _check_number(name: str, value: object, low: float, high: float, integer: bool = False) -> None:
    """Refuse a card value that is not a number (an integer where ``integer``) in ``[low, high]``."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise CardError(f"{name} must be {kind} in [{low}, {high}], got {value!r}")


def _pair(name: str, value: object) -> tuple[float, float]:
    """``value`` as a tuple of two numbers (JSON gives lists), or a :class:`CardError`."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise CardError(f"{name} must hold 2 numbers, got {value!r}")
    return tuple(value)  # type: ignore[return-value]


MAX_CHANNELS = 1024  # at the U-Net's bottleneck: the reference network (width 64, depth 4) has 512


@dataclass(frozen=True)
class Architecture:
    """Init arguments of :class:`atriumseg.models.unet.UNet`, bounded before any network is built."""

    in_channels: int = 5
    width: int = 32
    depth: int = 4

    def __post_init__(self) -> None:
        _check_number("architecture.in_channels", self.in_channels, 1, 31, integer=True)
        _check_number("architecture.width", self.width, 1, 512, integer=True)
        _check_number("architecture.depth", self.depth, 2, 8, integer=True)
        deepest = self.width * self.divisor
        if deepest > MAX_CHANNELS:  # width 512 at depth 8 would be 127 billion parameters, built before any check
            raise CardError(f"architecture: width {self.width} at depth {self.depth} gives {deepest} channels at the "
                            f"bottleneck (width x 2^(depth-1)); at most {MAX_CHANNELS}")

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
    window mapped to [0, 1] per volume; ``centre_clip`` (0: off) the middle fraction of each axis of the field
    whose upper percentile caps every voxel first (never below half way up its window), so a bright rim at the field's
    edge does not set the window (see :mod:`atriumseg.transforms.intensity`); ``context`` the neighbouring slices
    on each side stacked as channels; ``min_slice_size`` the in-plane size in voxels that smaller slices are zero-padded
    to (0: none), so a tight crop meets the network as training's padded crops did.
    """

    orientation: str = "RAS"
    plane: str = "axial"
    spacing: tuple[float, float] = (1.25, 1.25)
    percentiles: tuple[float, float] = (0.5, 99.5)
    centre_clip: float = 0.5
    context: int = 2
    slice_spacing: float = 1.25
    min_slice_size: int = 160

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "orientation", validate_axcodes(self.orientation))  # "ras" means "RAS"
        except ValueError as err:
            raise CardError(f"preprocessing.{err}") from None
        if self.plane not in PLANES:
            raise CardError(f"plane must be one of {PLANES}, got {self.plane!r}")
        spacing, percentiles = _pair("preprocessing.spacing", self.spacing), _pair("preprocessing.percentiles",
                                                                                   self.percentiles)
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "percentiles", percentiles)
        for value in spacing:
            _check_number("preprocessing.spacing", value, *SPACING_MM)
        if self.slice_spacing != 0:
            _check_number("preprocessing.slice_spacing", self.slice_spacing, *SPACING_MM)
        for value in percentiles:
            _check_number("preprocessing.percentiles", value, 0, 100)
        if not percentiles[0] < percentiles[1]:
            raise CardError(f"preprocessing.percentiles must be 0 <= low < high <= 100, got {percentiles!r}")
        _check_number("preprocessing.centre_clip", self.centre_clip, 0, 1)
        _check_number("preprocessing.context", self.context, 0, 15, integer=True)
        _check_number("preprocessing.min_slice_size", self.min_slice_size, 0, 1024, integer=True)

    @property
    def channels(self) -> int:
        """Channels the network receives: the slice and ``context`` neighbours on each side."""
        return 2 * self.context + 1

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


# How an ensemble combines its members' probabilities on the input grid (``postprocessing.fusion``), in words: the
# mean, or the sigmoid of the mean logit, where a sure member outweighs a doubtful one (each probability clipped to
# [LOGIT_CLIP, 1 - LOGIT_CLIP] first: a member's map is 0 away from the atrium).
LOGIT_CLIP = 0.005
FUSIONS = {
    "mean": "their mean",
    "logit_mean": f"the sigmoid of their mean logit (each clipped to [{LOGIT_CLIP:g}, {1 - LOGIT_CLIP:g}])",
}


@dataclass(frozen=True)
class Postprocessing:
    """Turning probabilities into a mask: an ensemble's ``fusion`` of its members (a key of :data:`FUSIONS`; one
    network ignores it), then the ``threshold`` and the clean-up."""

    threshold: float = 0.5
    largest_component: bool = True
    fusion: str = "mean"

    def __post_init__(self) -> None:
        threshold = self.threshold
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold < 1.0:
            raise CardError(f"threshold must be a number in (0, 1), got {threshold!r}")
        if not isinstance(self.largest_component, bool):
            raise CardError(f"postprocessing.largest_component must be true or false, got {self.largest_component!r}")
        if not isinstance(self.fusion, str) or self.fusion not in FUSIONS:
            raise CardError(f"postprocessing.fusion must be one of {', '.join(FUSIONS)}, got {self.fusion!r}")
        if self.fusion == "logit_mean" and not LOGIT_CLIP < threshold < 1 - LOGIT_CLIP:
            raise CardError(f"threshold must be in ({LOGIT_CLIP:g}, {1 - LOGIT_CLIP:g}) with fusion logit_mean, whose "
                            f"clipped probabilities never leave that range, got {threshold!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary; the mean, which a card without ``fusion`` means, is left out, so such cards stay
        readable by atriumseg 0.8.0 and earlier."""
        data = asdict(self)
        if self.fusion == "mean":
            del data["fusion"]
        return data


@dataclass(frozen=True)
class ModelDesign:
    """What a model is, apart from its weights and history: its three typed parts, consistent together.

    The default is the design of the built-in model's axial member (:data:`BUILT_IN`).
    """

    architecture: Architecture = field(default_factory=Architecture)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    postprocessing: Postprocessing = field(default_factory=Postprocessing)

    def __post_init__(self) -> None:
        if self.architecture.in_channels != self.preprocessing.channels:
            raise CardError(
                f"in_channels={self.architecture.in_channels} does not match context={self.preprocessing.context} "
                f"(expected {self.preprocessing.channels} channels)"
            )

    @property
    def design(self) -> ModelDesign:
        """The design alone (of a card: without version and provenance)."""
        return ModelDesign(self.architecture, self.preprocessing, self.postprocessing)


# What a card written before these fields existed meant by their absence: no resampling between slices, no padding,
# no cap at the centre's percentile.
LEGACY_PREPROCESSING = {"slice_spacing": 0.0, "min_slice_size": 0, "centre_clip": 0.0}
BUILT_IN = ModelDesign()  # the built-in axial member: 2.5D (two neighbours each side), width 32, depth 4


@dataclass(frozen=True)
class ModelCard(ModelDesign):
    """A self-describing model: its design, the package version that made it, and its provenance."""

    package_version: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.format_version != FORMAT_VERSION:
            raise CardError(
                f"model card format version {self.format_version} is not supported "
                f"(this atriumseg reads version {FORMAT_VERSION}); upgrade atriumseg or re-export the model"
            )
        super().__post_init__()

    @property
    def picked_on_validation(self) -> bool:
        """Whether the model was chosen or measured on its validation cases (a run's ``best/``, or a shipped card,
        holds their figures): those cases no longer measure it."""
        return "validation" in self.provenance

    @classmethod
    def of(cls, design: ModelDesign, **details: Any) -> ModelCard:
        """The card of ``design`` with ``details`` (``package_version``, ``provenance``)."""
        return cls(design.architecture, design.preprocessing, design.postprocessing, **details)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {**asdict(self), "postprocessing": self.postprocessing.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """Validate and rebuild a card; unknown, missing or out-of-range fields raise :class:`CardError`."""
        try:
            return cls(
                architecture=Architecture(**data["architecture"]),
                preprocessing=Preprocessing(**{**LEGACY_PREPROCESSING, **data["preprocessing"]}),
                postprocessing=Postprocessing(**data["postprocessing"]),
                package_version=str(data.get("package_version", "")),
                provenance=dict(data.get("provenance", {})),
                format_version=int(data["format_version"]),
            )
        except CardError:
            raise
        except (KeyError, TypeError, ValueError) as err:
            raise CardError(f"malformed model card: {err}") from err

    def save(self, path: Path) -> None:
        """Write the card as indented JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> ModelCard:
        """Read and validate a JSON card."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as err:  # ValueError: not JSON or not UTF-8; deep nesting
            raise CardError(f"cannot read model card {path}: {err}") from err
        return cls.from_dict(data)
