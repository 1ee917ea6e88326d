"""What defines a training run, and the model design it trains."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from atriumseg.models.card import BUILT_IN, ModelDesign
from atriumseg.transforms.augmentation import GAMMA, ZOOM, padded_crop_side

PATCH = 128  # the built-in model's training slice size; BUILT_IN's min_slice_size is its padded crop


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; recorded on the model card.

    The design fields (``width`` to ``centre_clip``) default to the built-in model's
    (:data:`atriumseg.models.card.BUILT_IN`) and make :attr:`design`, so a run with no options trains
    that design. ``datasets`` are MSD-layout folders trained on together; ``weights`` (one per dataset,
    default equal) set each dataset's share of every batch, and ``orientations`` (one per dataset, or one
    for all; default ``"known"``) the true axis codes of its voxels (``"known"`` fixes the datasets the
    project knows to be mislabelled, None trusts the headers). ``val_cases`` and ``exclude`` name cases
    of any dataset; with ``folds``, each dataset is split into folds of its own. ``gamma`` is the range of
    the augmentation's random contrast curve (below 1 brightens mid-tones), ``darken`` the share of slices whose
    atrium is darkened against its surround (0: none), ``zoom`` the range of the random scaling of each in-plane axis
    (1 - ``zoom`` to 1 + ``zoom``). ``init`` names a model folder of the same architecture (or a smaller one:
    fewer neighbour slices, channels or levels, grown to this run's so the network starts from the model's
    function) whose weights the run starts from (ignored when resuming, since ``last/`` then holds newer ones);
    the card's ``lineage`` records that model's stages before this one.
    """

    datasets: tuple[Path, ...]
    output: Path
    weights: tuple[float, ...] = ()
    orientations: tuple[str | None, ...] = ("known",)
    width: int = BUILT_IN.architecture.width
    depth: int = BUILT_IN.architecture.depth
    context: int = BUILT_IN.preprocessing.context
    plane: str = BUILT_IN.preprocessing.plane
    spacing: tuple[float, float] = BUILT_IN.preprocessing.spacing
    slice_spacing: float = BUILT_IN.preprocessing.slice_spacing
    centre_clip: float = BUILT_IN.preprocessing.centre_clip
    patch: int = PATCH
    epochs: int = 100
    steps_per_epoch: int = 50
    volumes_per_step: int = 4
    slices_per_volume: int = 4
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    gamma: tuple[float, float] = GAMMA
    darken: float = 0.0
    zoom: float = ZOOM
    val_cases: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    folds: int = 0
    fold: int = 0
    val_every: int = 5
    seed: int = 0
    max_minutes: float = 0.0
    device: str = "auto"
    precision: str = "auto"
    workers: int = 0
    resume: bool = False
    init: Path | None = None
    command: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        datasets = (self.datasets,) if isinstance(self.datasets, (str, Path)) else tuple(self.datasets)
        object.__setattr__(self, "datasets", tuple(Path(d) for d in datasets))
        n = len(self.datasets)
        if not n:
            raise ValueError("TrainConfig needs at least one dataset")
        weights = tuple(float(w) for w in self.weights) or (1.0,) * n
        orientations = tuple(self.orientations) or ("known",)
        if len(orientations) == 1:
            orientations *= n
        if len(weights) != n or len(orientations) != n:
            raise ValueError(
                f"{n} datasets need {n} weights and 1 or {n} orientations, got {len(weights)} and {len(orientations)}"
            )
        if self.folds == 1 or self.folds < 0 or not 0 <= self.fold < max(self.folds, 1):
            raise ValueError(f"--fold {self.fold} of --folds {self.folds}: give --folds N (2 or more) with --fold "
                             "0 to N-1, or neither")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"dataset weights must be >= 0 with a positive sum, got {list(weights)}")
        gamma = tuple(float(g) for g in self.gamma)
        if len(gamma) != 2 or not 0 < gamma[0] <= gamma[1]:
            raise ValueError(f"gamma must be a range LOW HIGH with 0 < LOW <= HIGH, got {list(self.gamma)}")
        object.__setattr__(self, "gamma", gamma)
        if not 0.0 <= self.darken <= 1.0:
            raise ValueError(f"darken must be a share of slices between 0 and 1, got {self.darken}")
        if not 0.0 <= self.zoom < 1.0:
            raise ValueError(f"zoom must be a range from 0 to below 1 (factors 1 - zoom to 1 + zoom), got {self.zoom}")
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "orientations", orientations)
        self.design  # noqa: B018 - a design the card would refuse is refused now, with the card's reason

    @property
    def design(self) -> ModelDesign:
        """The design this run trains: the built-in one with this run's choices.

        Its ``min_slice_size`` is the crop training cuts (:func:`padded_crop_side` of the patch) on the
        network's pooling grid: slices smaller than that are zero-padded at inference as they were in
        training, so a tight crop around the atrium meets the network in the surround it learned.
        """
        preprocessing = replace(BUILT_IN.preprocessing, plane=self.plane, spacing=tuple(self.spacing),
                                context=self.context, slice_spacing=self.slice_spacing, centre_clip=self.centre_clip)
        architecture = replace(BUILT_IN.architecture, in_channels=preprocessing.channels, width=self.width,
                               depth=self.depth)
        preprocessing = replace(preprocessing, min_slice_size=padded_crop_side(self.patch, architecture.divisor))
        return ModelDesign(architecture, preprocessing, BUILT_IN.postprocessing)
